package sqs_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
)

// TestIAMUser: an IAM user's requests are allowed exactly what its
// policies allow on the queue ARNs (sqs:<Operation>).
func TestIAMUser(t *testing.T) {
	t.Parallel()
	e := harness.Start(t)
	ctx := context.Background()
	c := client(e)
	ic := iam.NewFromConfig(e.AWSConfig())
	for _, n := range []string{"allowed", "other"} {
		if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(n)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("worker")}); err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:sqs:us-east-1:" + e.Srv.Account.ID + ":allowed"
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:SendMessage","sqs:ReceiveMessage"],"Resource":"` + arn + `"}]}`
	if _, err := ic.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String("worker"), PolicyName: aws.String("q"), PolicyDocument: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	key, err := ic.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("worker")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.AWSConfig()
	cfg.Credentials = credentials.NewStaticCredentialsProvider(*key.AccessKey.AccessKeyId, *key.AccessKey.SecretAccessKey, "")
	uc := sqs.NewFromConfig(cfg)
	base := e.Srv.Endpoint + "/" + e.Srv.Account.ID + "/"
	var sent bool
	harness.Eventually(t, 10e9, "the user's key works", func() bool {
		_, err := uc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(base + "allowed"), MessageBody: aws.String("x")})
		sent = err == nil
		return sent
	})
	if _, err := uc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(base + "other"), MessageBody: aws.String("x")}); code(err) != "AccessDenied" {
		t.Fatalf("send to a queue the policy does not name: %v", err)
	}
	if _, err := uc.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(base + "allowed")}); code(err) != "AccessDenied" {
		t.Fatalf("an action the policy does not name: %v", err)
	}
	if _, err := uc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("new")}); code(err) != "AccessDenied" {
		t.Fatalf("CreateQueue without sqs:CreateQueue: %v", err)
	}
	r, err := uc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(base + "allowed"), WaitTimeSeconds: 2})
	if err != nil || len(r.Messages) != 1 {
		t.Fatalf("receive: %v %v", r, err)
	}
}
