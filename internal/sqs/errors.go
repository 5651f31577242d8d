package sqs

import "fmt"

// Error kinds: the JSON protocol's error shape names (sqsapi maps each to
// its Query code and HTTP status in one table).
const (
	KindQueueDoesNotExist            = "QueueDoesNotExist"
	KindQueueNameExists              = "QueueNameExists"
	KindQueueDeletedRecently         = "QueueDeletedRecently"
	KindInvalidAttributeName         = "InvalidAttributeName"
	KindInvalidAttributeValue        = "InvalidAttributeValue"
	KindInvalidParameterValue        = "InvalidParameterValue"
	KindMissingParameter             = "MissingParameter"
	KindInvalidMessageContents       = "InvalidMessageContents"
	KindReceiptHandleIsInvalid       = "ReceiptHandleIsInvalid"
	KindMessageNotInflight           = "MessageNotInflight"
	KindPurgeQueueInProgress         = "PurgeQueueInProgress"
	KindTooManyEntriesInBatchRequest = "TooManyEntriesInBatchRequest"
	KindEmptyBatchRequest            = "EmptyBatchRequest"
	KindBatchEntryIdsNotDistinct     = "BatchEntryIdsNotDistinct"
	KindInvalidBatchEntryId          = "InvalidBatchEntryId"
	KindBatchRequestTooLong          = "BatchRequestTooLong"
	KindUnsupportedOperation         = "UnsupportedOperation"
	KindAccessDenied                 = "AccessDenied"
	KindOverLimit                    = "OverLimit"
	KindInternal                     = "InternalError"
)

// Error is a typed queue error: Kind names it (one of the Kind constants),
// Message says what was wrong in SQS's words.
type Error struct {
	Kind    string
	Message string
}

func (e *Error) Error() string { return e.Kind + ": " + e.Message }

func errf(kind, format string, a ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, a...)}
}

func errNoQueue() *Error {
	return errf(KindQueueDoesNotExist, "The specified queue does not exist.")
}

func errInvalidValue(name string) *Error {
	return errf(KindInvalidAttributeValue, "Invalid value for the parameter %s.", name)
}
