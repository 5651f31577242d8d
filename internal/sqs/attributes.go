package sqs

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/lambdaplane/lambdaplane/internal/iam"
)

// Attribute defaults (AWS's).
var attrDefaults = map[string]string{
	"VisibilityTimeout":             "30",
	"MaximumMessageSize":            "262144",
	"MessageRetentionPeriod":        "345600",
	"DelaySeconds":                  "0",
	"ReceiveMessageWaitTimeSeconds": "0",
	"SqsManagedSseEnabled":          "true",
}

// intRange bounds the numeric attributes.
var intRange = map[string][2]int{
	"VisibilityTimeout":             {0, 43200},
	"MaximumMessageSize":            {1024, 262144},
	"MessageRetentionPeriod":        {60, 1209600},
	"DelaySeconds":                  {0, 900},
	"ReceiveMessageWaitTimeSeconds": {0, 20},
	"KmsDataKeyReusePeriodSeconds":  {60, 86400},
}

// settable attributes (besides FifoQueue, at creation only).
var settable = map[string]bool{
	"VisibilityTimeout": true, "MaximumMessageSize": true, "MessageRetentionPeriod": true,
	"DelaySeconds": true, "ReceiveMessageWaitTimeSeconds": true, "RedrivePolicy": true,
	"RedriveAllowPolicy": true, "Policy": true, "ContentBasedDeduplication": true,
	"KmsMasterKeyId": true, "KmsDataKeyReusePeriodSeconds": true, "SqsManagedSseEnabled": true,
	"DeduplicationScope": true, "FifoThroughputLimit": true,
}

// fifoOnly attributes are refused on standard queues.
var fifoOnly = map[string]bool{"ContentBasedDeduplication": true, "DeduplicationScope": true, "FifoThroughputLimit": true}

// ReadOnlyAttributes are computed by GetQueueAttributes.
var ReadOnlyAttributes = []string{
	"QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
	"ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp",
}

// AllAttributeNames lists every attribute GetQueueAttributes knows.
func AllAttributeNames() []string {
	out := []string{"FifoQueue"}
	for k := range settable {
		out = append(out, k)
	}
	out = append(out, ReadOnlyAttributes...)
	slices.Sort(out)
	return out
}

// KnownAttribute reports whether GetQueueAttributes accepts name.
func KnownAttribute(name string) bool {
	return name == "All" || name == "FifoQueue" || settable[name] || slices.Contains(ReadOnlyAttributes, name)
}

// RedrivePolicy is a queue's dead-letter configuration.
type RedrivePolicy struct {
	DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	MaxReceiveCount     int    `json:"maxReceiveCount"`
}

// RedriveAllowPolicy says which source queues may use a queue as their
// dead-letter queue.
type RedriveAllowPolicy struct {
	RedrivePermission string   `json:"redrivePermission"`
	SourceQueueArns   []string `json:"sourceQueueArns,omitempty"`
}

func parseRedrive(s string) (*RedrivePolicy, error) {
	var raw map[string]any
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, errf(KindInvalidParameterValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Redrive policy is not a valid JSON map.", s)
	}
	p := &RedrivePolicy{}
	arn, _ := raw["deadLetterTargetArn"].(string)
	if arn == "" {
		return nil, errf(KindInvalidParameterValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain mandatory attribute: deadLetterTargetArn.", s)
	}
	p.DeadLetterTargetArn = arn
	switch v := raw["maxReceiveCount"].(type) {
	case float64:
		p.MaxReceiveCount = int(v)
		if float64(p.MaxReceiveCount) != v {
			p.MaxReceiveCount = -1
		}
	case string:
		n, err := strconv.Atoi(v)
		if err != nil {
			n = -1
		}
		p.MaxReceiveCount = n
	case nil:
		return nil, errf(KindInvalidParameterValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain mandatory attribute: maxReceiveCount.", s)
	default:
		p.MaxReceiveCount = -1
	}
	if p.MaxReceiveCount < 1 || p.MaxReceiveCount > 1000 {
		return nil, errf(KindInvalidParameterValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: %v, valid values are from 1 to 1000 both inclusive.", s, raw["maxReceiveCount"])
	}
	for k := range raw {
		if k != "deadLetterTargetArn" && k != "maxReceiveCount" {
			return nil, errf(KindInvalidParameterValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Only following attributes are supported: [deadLetterTargetArn, maxReceiveCount].", s)
		}
	}
	return p, nil
}

func parseRedriveAllow(s string) (*RedriveAllowPolicy, error) {
	var p RedriveAllowPolicy
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return nil, errf(KindInvalidParameterValue, "Value %s for parameter RedriveAllowPolicy is invalid. Reason: Amazon SQS can't parse the redrive allow policy as JSON.", s)
	}
	switch p.RedrivePermission {
	case "allowAll", "denyAll":
		if len(p.SourceQueueArns) > 0 {
			return nil, errf(KindInvalidParameterValue, "Value %s for parameter RedriveAllowPolicy is invalid. Reason: Amazon SQS can't set sourceQueueArns when redrivePermission is %s.", s, p.RedrivePermission)
		}
	case "byQueue":
		if len(p.SourceQueueArns) == 0 || len(p.SourceQueueArns) > 10 {
			return nil, errf(KindInvalidParameterValue, "Value %s for parameter RedriveAllowPolicy is invalid. Reason: sourceQueueArns must name 1 to 10 queues when redrivePermission is byQueue.", s)
		}
	default:
		return nil, errf(KindInvalidParameterValue, "Value %s for parameter RedriveAllowPolicy is invalid. Reason: redrivePermission must be allowAll, denyAll or byQueue.", s)
	}
	return &p, nil
}

// validateAttributes checks attrs as SetQueueAttributes/CreateQueue take
// them; fifo is the queue's type. It returns the attributes normalised.
func validateAttributes(attrs map[string]string, fifo, creating bool) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range attrs {
		switch {
		case k == "FifoQueue":
			if !creating {
				return nil, errf(KindInvalidAttributeName, "Unknown Attribute FifoQueue.")
			}
			continue
		case !settable[k]:
			return nil, errf(KindInvalidAttributeName, "Unknown Attribute %s.", k)
		case fifoOnly[k] && !fifo:
			return nil, errf(KindInvalidAttributeName, "Unknown Attribute %s.", k)
		}
		if r, ok := intRange[k]; ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < r[0] || n > r[1] {
				return nil, errInvalidValue(k)
			}
			v = strconv.Itoa(n)
		}
		switch k {
		case "ContentBasedDeduplication", "SqsManagedSseEnabled":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, errInvalidValue(k)
			}
			v = strconv.FormatBool(b)
		case "DeduplicationScope":
			if v != "messageGroup" && v != "queue" {
				return nil, errInvalidValue(k)
			}
		case "FifoThroughputLimit":
			if v != "perQueue" && v != "perMessageGroupId" {
				return nil, errInvalidValue(k)
			}
		case "RedrivePolicy":
			if v != "" {
				p, err := parseRedrive(v)
				if err != nil {
					return nil, err
				}
				b, _ := json.Marshal(p)
				v = string(b)
			}
		case "RedriveAllowPolicy":
			if v != "" {
				p, err := parseRedriveAllow(v)
				if err != nil {
					return nil, err
				}
				b, _ := json.Marshal(p)
				v = string(b)
			}
		case "Policy":
			if v != "" {
				if _, err := iam.ParsePolicy(v, iam.ResourcePolicy); err != nil {
					return nil, errf(KindInvalidAttributeValue, "Invalid value for the parameter Policy. Reason: %v", err)
				}
			}
		}
		out[k] = v
	}
	return out, nil
}

func atoiDefault(m map[string]string, k string) int {
	v, ok := m[k]
	if !ok {
		v = attrDefaults[k]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// names a queue may have: 1-80 of [A-Za-z0-9_-], a FIFO queue's ending
// in ".fifo".
func validName(name string, fifo bool) error {
	base := name
	if fifo {
		if !strings.HasSuffix(name, ".fifo") {
			return errf(KindInvalidParameterValue, "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.")
		}
		base = strings.TrimSuffix(name, ".fifo")
	}
	ok := len(name) <= 80 && base != ""
	for _, c := range base {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			ok = false
		}
	}
	if !ok {
		if fifo {
			return errf(KindInvalidParameterValue, "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.")
		}
		if strings.HasSuffix(name, ".fifo") {
			return errf(KindInvalidParameterValue, "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length. A queue name ending in .fifo must be created with the attribute FifoQueue=true.")
		}
		return errf(KindInvalidParameterValue, "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}
	return nil
}

func describeAttr(k, v string) string { return fmt.Sprintf("%s=%s", k, v) }
