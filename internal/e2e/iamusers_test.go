package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

func (e *env) iamFor(keyID, secret string) *iam.Client {
	return iam.New(iam.Options{Region: "us-east-1", BaseEndpoint: aws.String(e.srv.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(keyID, secret, "")})
}

// TestIAMUserVpcConditionKeys: an IAM user with its own access key is
// allowed only what its identity policies allow, on every service; its
// policy restricts VPC attachment with lambda:VpcIds (StringEquals),
// lambda:SubnetIds (ForAllValues:StringEquals) and a Null check on
// lambda:VpcIds; the account root key stays unrestricted.
func TestIAMUserVpcConditionKeys(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	ctx := context.Background()
	root := e.srv.Account.Keys[0]
	rootIAM := e.iamFor(root.ID, root.Secret)
	ec := e.ec2()
	n := makeNetwork(t, ec, "10.0.0.0/16", "10.0.1.0/24")
	other, err := ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(n.vpc), CidrBlock: aws.String("10.0.2.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	otherSubnet := *other.Subnet.SubnetId

	if _, err := rootIAM.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("dev")}); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
	 {"Effect":"Allow","Action":["lambda:GetFunction","lambda:InvokeFunction","lambda:DeleteFunction"],"Resource":"arn:aws:lambda:*:%[1]s:function:app*"},
	 {"Effect":"Allow","Action":["lambda:CreateFunction","lambda:UpdateFunctionConfiguration"],"Resource":"*",
	  "Condition":{"StringEquals":{"lambda:VpcIds":"%[2]s"},"ForAllValues:StringEquals":{"lambda:SubnetIds":["%[3]s"]}}},
	 {"Effect":"Deny","Action":["lambda:CreateFunction","lambda:UpdateFunctionConfiguration"],"Resource":"*","Condition":{"Null":{"lambda:VpcIds":"true"}}},
	 {"Effect":"Allow","Action":"iam:GetUser","Resource":"*"}]}`, e.srv.Account.ID, n.vpc, n.subnet)
	if _, err := rootIAM.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String("dev"), PolicyName: aws.String("vpc-only"), PolicyDocument: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	key, err := rootIAM.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("dev")})
	if err != nil {
		t.Fatal(err)
	}
	kid, secret := *key.AccessKey.AccessKeyId, *key.AccessKey.SecretAccessKey
	dev := e.lambdaFor(kid, secret)

	create := func(name string, subnets ...string) error {
		in := &lambda.CreateFunctionInput{
			FunctionName: aws.String(name), Runtime: "provided.al2023", Handler: aws.String("bootstrap"),
			Role: aws.String("arn:aws:iam::" + e.srv.Account.ID + ":role/vpc"), Code: &types.FunctionCode{ZipFile: probeZip},
		}
		if len(subnets) > 0 {
			in.VpcConfig = &types.VpcConfig{SubnetIds: subnets, SecurityGroupIds: []string{n.sgApp}}
		}
		_, err := dev.CreateFunction(ctx, in)
		return err
	}
	if err := create("app1"); apiCode(err) != "AccessDeniedException" || !strings.Contains(err.Error(), "explicit deny") {
		t.Fatalf("create without VpcConfig: %v, want AccessDeniedException (explicit deny)", err)
	}
	if err := create("app1", otherSubnet); apiCode(err) != "AccessDeniedException" {
		t.Fatalf("create in a subnet the policy does not list: %v, want AccessDeniedException", err)
	}
	if err := create("app1", n.subnet, otherSubnet); apiCode(err) != "AccessDeniedException" {
		t.Fatalf("create with one unlisted subnet: %v, want AccessDeniedException", err)
	}
	if err := create("app1", n.subnet); err != nil {
		t.Fatalf("create in the allowed VPC and subnet: %v", err)
	}
	e.waitState(t, dev, "app1", types.StateActive)
	out, _, err := invokeProbe(t, dev, "app1", map[string]any{})
	if arn, _ := out["arn"].(string); err != nil || !strings.HasSuffix(arn, ":function:app1") {
		t.Fatalf("invoke as the user: %v %v", out, err)
	}
	_, err = dev.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("app1"),
		VpcConfig: &types.VpcConfig{SubnetIds: []string{otherSubnet}, SecurityGroupIds: []string{n.sgApp}}})
	if apiCode(err) != "AccessDeniedException" {
		t.Fatalf("move to an unlisted subnet: %v, want AccessDeniedException", err)
	}
	// Everything the policy does not allow is denied, in each service's format.
	if _, err := dev.ListFunctions(ctx, &lambda.ListFunctionsInput{}); apiCode(err) != "AccessDeniedException" {
		t.Fatalf("ListFunctions: %v, want AccessDeniedException", err)
	}
	e.createProbe("other")
	if _, err := dev.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("other")}); apiCode(err) != "AccessDeniedException" {
		t.Fatalf("GetFunction outside the policy's resource: %v, want AccessDeniedException", err)
	}
	if _, err := e.ec2For(kid, secret).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); apiCode(err) != "UnauthorizedOperation" {
		t.Fatalf("ec2 DescribeVpcs: %v, want UnauthorizedOperation", err)
	}
	devIAM := e.iamFor(kid, secret)
	if _, err := devIAM.ListRoles(ctx, &iam.ListRolesInput{}); apiCode(err) != "AccessDenied" {
		t.Fatalf("iam ListRoles: %v, want AccessDenied", err)
	}
	me, err := devIAM.GetUser(ctx, &iam.GetUserInput{})
	if err != nil || *me.User.UserName != "dev" || *me.User.Arn != "arn:aws:iam::"+e.srv.Account.ID+":user/dev" {
		t.Fatalf("GetUser as the user: %+v %v", me, err)
	}
	// The root key is not restricted.
	if _, err := e.lambda.ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil {
		t.Fatalf("root ListFunctions: %v", err)
	}
	// A user with keys or policies cannot be deleted; a deleted key stops working.
	if _, err := rootIAM.DeleteUser(ctx, &iam.DeleteUserInput{UserName: aws.String("dev")}); apiCode(err) != "DeleteConflict" {
		t.Fatalf("delete a user with policies: %v, want DeleteConflict", err)
	}
	keys, err := rootIAM.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String("dev")})
	if err != nil || len(keys.AccessKeyMetadata) != 1 || *keys.AccessKeyMetadata[0].AccessKeyId != kid {
		t.Fatalf("ListAccessKeys: %+v %v", keys, err)
	}
	if _, err := rootIAM.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String("dev"), AccessKeyId: aws.String(kid)}); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("app1")}); apiCode(err) != "UnrecognizedClientException" {
		t.Fatalf("deleted key: %v, want UnrecognizedClientException", err)
	}
	if _, err := rootIAM.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: aws.String("dev"), PolicyName: aws.String("vpc-only")}); err != nil {
		t.Fatal(err)
	}
	if _, err := rootIAM.DeleteUser(ctx, &iam.DeleteUserInput{UserName: aws.String("dev")}); err != nil {
		t.Fatalf("delete the user: %v", err)
	}

	// The same through Debian's AWS CLI (botocore reads the XML shapes).
	var u struct {
		User struct{ UserName, Arn string }
	}
	e.mustCLI(&u, "iam", "create-user", "--user-name", "cli")
	var k struct {
		AccessKey struct{ UserName, AccessKeyId, SecretAccessKey, Status string }
	}
	e.mustCLI(&k, "iam", "create-access-key", "--user-name", "cli")
	if u.User.UserName != "cli" || k.AccessKey.UserName != "cli" || len(k.AccessKey.SecretAccessKey) != 40 || k.AccessKey.Status != "Active" {
		t.Fatalf("CLI create-user / create-access-key: %+v %+v", u, k)
	}
	e.mustCLI(nil, "iam", "attach-user-policy", "--user-name", "cli", "--policy-arn", "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
	var att struct{ AttachedPolicies []struct{ PolicyName string } }
	e.mustCLI(&att, "iam", "list-attached-user-policies", "--user-name", "cli")
	var users struct{ Users []struct{ UserName string } }
	e.mustCLI(&users, "iam", "list-users")
	if len(att.AttachedPolicies) != 1 || att.AttachedPolicies[0].PolicyName != "AWSLambdaBasicExecutionRole" || len(users.Users) != 1 {
		t.Fatalf("CLI list-attached-user-policies / list-users: %+v %+v", att, users)
	}
	if _, errOut, code := e.cli("iam", "delete-user", "--user-name", "cli"); code == 0 || !strings.Contains(errOut, "DeleteConflict") {
		t.Fatalf("CLI delete-user with a key and a policy: exit %d: %s", code, errOut)
	}
}
