package iam

// ManagedPolicy is an AWS-managed policy that roles can attach by ARN.
type ManagedPolicy struct {
	Name     string
	ARN      string
	Path     string
	Document string
	policy   *Policy
}

// The AWS-managed policies lambdaplane knows, with AWS's documents.
const (
	BasicExecutionRoleARN     = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
	VPCAccessExecutionRoleARN = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
	SQSQueueExecutionRoleARN  = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
)

var managedPolicies = func() map[string]*ManagedPolicy {
	list := []*ManagedPolicy{
		{
			Name: "AWSLambdaBasicExecutionRole",
			ARN:  BasicExecutionRoleARN,
			Path: "/service-role/",
			Document: `{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents"
      ],
      "Resource": "*"
    }
  ]
}`,
		},
		{
			Name: "AWSLambdaVPCAccessExecutionRole",
			ARN:  VPCAccessExecutionRoleARN,
			Path: "/service-role/",
			Document: `{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AWSLambdaVPCAccessExecutionPermissions",
      "Effect": "Allow",
      "Action": [
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses"
      ],
      "Resource": "*"
    }
  ]
}`,
		},
		{
			Name: "AWSLambdaSQSQueueExecutionRole",
			ARN:  SQSQueueExecutionRoleARN,
			Path: "/service-role/",
			Document: `{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents"
      ],
      "Resource": "*"
    }
  ]
}`,
		},
	}
	m := make(map[string]*ManagedPolicy, len(list))
	for _, p := range list {
		pol, err := ParsePolicy(p.Document, IdentityPolicy)
		if err != nil {
			panic("managed policy " + p.Name + ": " + err.Error())
		}
		p.policy = pol
		m[p.ARN] = p
	}
	return m
}()

// LookupManagedPolicy returns the AWS-managed policy with arn.
func LookupManagedPolicy(arn string) (*ManagedPolicy, bool) {
	p, ok := managedPolicies[arn]
	return p, ok
}
