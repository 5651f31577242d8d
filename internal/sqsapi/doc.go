// Package sqsapi serves the SQS API (2012-11-05) on top of internal/sqs in
// both wire protocols its clients speak: the Query protocol (form-encoded
// Action requests, XML responses; awscli 2.9, boto3 1.26) and the JSON
// protocol (X-Amz-Target: AmazonSQS.<Op>, application/x-amz-json-1.0;
// current SDKs). Queue URLs are http://<host the request came to>/<account>/<name>.
// A request for another account's queue is served exactly when the
// queue's Policy grants the caller the action; IAM users' requests are
// also checked against their identity policies (sqs:<Op> on the queue ARN).
package sqsapi
