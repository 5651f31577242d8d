// Package destinations is what happens around an asynchronous (Event)
// invocation: the function event invoke configs (Put/Get/Update/Delete/
// ListFunctionEventInvokeConfig(s): MaximumRetryAttempts,
// MaximumEventAgeInSeconds, DestinationConfig OnSuccess/OnFailure), stored
// per function and qualifier in the bucket "eventinvoke", and the
// Dispatcher that sends Lambda's invocation record to an SQS queue or
// another function when an invocation succeeds or finally fails, and the
// original event to the function's dead-letter queue (DeadLetterConfig)
// with the attributes RequestID, ErrorCode and ErrorMessage.
//
// The package is pure: queues, functions and roles are interfaces the
// server wires; internal/invoke's async queue asks Limits before each
// attempt and hands every final outcome to Deliver.
package destinations
