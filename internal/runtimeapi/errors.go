package runtimeapi

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Error types the server itself produces.
const (
	// ErrorTypeResponseSizeTooLarge fails an invocation whose response body
	// exceeded MaxResponseBytes (AWS: Function.ResponseSizeTooLarge).
	ErrorTypeResponseSizeTooLarge = "Function.ResponseSizeTooLarge"
	// ErrorTypeTruncatedResponse fails an invocation whose response body
	// could not be read to the end (the runtime's connection broke).
	ErrorTypeTruncatedResponse = "Runtime.TruncatedResponse"
	// errorTypeUnhandled is used when the runtime names no error type.
	errorTypeUnhandled = "Unhandled"
)

// FunctionError is an error reported by the runtime for an invocation (or for
// its initialisation), or produced by the server on the runtime's behalf.
type FunctionError struct {
	// Type is the body's errorType, else the Lambda-Runtime-Function-Error-Type
	// header, else "Unhandled".
	Type    string
	Message string
	// Body is the raw JSON body as the runtime sent it; a body that was not
	// JSON is normalised to {"errorMessage","errorType","stackTrace"}.
	Body []byte
}

func (e *FunctionError) Error() string {
	if e.Message == "" {
		return e.Type
	}
	return e.Type + ": " + e.Message
}

type errorDoc struct {
	ErrorMessage string   `json:"errorMessage"`
	ErrorType    string   `json:"errorType"`
	StackTrace   []string `json:"stackTrace"`
}

// parseFunctionError builds the FunctionError for an error body posted by the
// runtime with the given Lambda-Runtime-Function-Error-Type header.
func parseFunctionError(headerType string, body []byte) *FunctionError {
	fe := &FunctionError{}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && json.Valid(trimmed) {
		fe.Body = body
		if trimmed[0] == '{' {
			// Only the two string fields: the stack trace differs between
			// runtimes (strings in Python/Node, objects in Go) and stays in Body.
			var doc struct {
				ErrorMessage json.RawMessage `json:"errorMessage"`
				ErrorType    json.RawMessage `json:"errorType"`
			}
			if json.Unmarshal(trimmed, &doc) == nil {
				fe.Type = jsonString(doc.ErrorType)
				fe.Message = jsonString(doc.ErrorMessage)
			}
		}
		if fe.Type == "" {
			fe.Type = headerType
		}
		if fe.Type == "" {
			fe.Type = errorTypeUnhandled
		}
		return fe
	}
	fe.Type = headerType
	if fe.Type == "" {
		fe.Type = errorTypeUnhandled
	}
	fe.Message = string(body)
	fe.Body = marshalErrorDoc(errorDoc{ErrorMessage: fe.Message, ErrorType: fe.Type, StackTrace: []string{}})
	return fe
}

// jsonString returns raw as a string if it is a JSON string, its JSON text
// otherwise (a number or object in errorMessage is still informative).
func jsonString(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

func marshalErrorDoc(d errorDoc) []byte {
	b, err := json.Marshal(d)
	if err != nil { // cannot happen: only strings
		return []byte(`{"errorMessage":"","errorType":"` + errorTypeUnhandled + `","stackTrace":[]}`)
	}
	return b
}

// responseTooLarge is the invocation error for an oversized response, worded
// and shaped as AWS returns it.
func responseTooLarge(limit int) *FunctionError {
	msg := "Response payload size exceeded maximum allowed payload size (" + strconv.Itoa(limit) + " bytes)."
	body, _ := json.Marshal(struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}{msg, ErrorTypeResponseSizeTooLarge})
	return &FunctionError{Type: ErrorTypeResponseSizeTooLarge, Message: msg, Body: body}
}

func truncatedResponse(err error) *FunctionError {
	msg := "The runtime's response body could not be read: " + err.Error()
	return &FunctionError{
		Type:    ErrorTypeTruncatedResponse,
		Message: msg,
		Body:    marshalErrorDoc(errorDoc{ErrorMessage: msg, ErrorType: ErrorTypeTruncatedResponse, StackTrace: []string{}}),
	}
}
