// Package logsapi is the CloudWatch Logs subset lambdaplane serves (JSON
// 1.1, X-Amz-Target Logs_20140328.<Operation>) over the records the logs
// package keeps: each function's records form the log group
// /aws/lambda/<function> (or the function's LoggingConfig.LogGroup), each
// execution environment's the log stream YYYY/MM/DD/[<version>]<id>, each
// line of a record a log event.
//
// Served: DescribeLogGroups, DescribeLogStreams, GetLogEvents,
// FilterLogEvents (filter patterns: see Compile), CreateLogGroup,
// DeleteLogGroup, PutRetentionPolicy, DeleteRetentionPolicy. Enough for
// `aws logs tail --follow` (FilterLogEvents with startTime, polled).
//
// Retention is enforced twice: reads never return an event older than the
// group's retention, and a purge loop, run by whichever server holds a
// lease in the store (so one server of a cluster at a time), removes the
// stored records older than it.
package logsapi
