package hyperplane

import (
	"errors"
	"fmt"

	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// Reasons, spelled as Lambda's StateReasonCode / LastUpdateStatusReasonCode.
const (
	ReasonSubnetOutOfIPAddresses = "SubnetOutOfIPAddresses"
	ReasonEniLimitExceeded       = "EniLimitExceeded"
	ReasonInvalidSubnet          = "InvalidSubnet"
	ReasonInvalidSecurityGroup   = "InvalidSecurityGroup"
	ReasonInternalError          = "InternalError"
)

// Error is why a Hyperplane ENI could not be ensured or attached. Reason
// is a Lambda state reason code; Message tells the user what to change.
type Error struct {
	Reason  string
	Message string
	Err     error // the underlying error, if any
}

func (e *Error) Error() string { return e.Reason + ": " + e.Message }

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns err's reason code (InternalError for errors of other
// types, "" for nil).
func ReasonOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonInternalError
}

func newErr(reason string, err error, format string, a ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, a...), Err: err}
}

// fromModel maps a VPC model error of creating an interface to a reason.
func fromModel(err error, subnetID string, groups []string) error {
	var me *vpc.Error
	if !errors.As(err, &me) {
		return newErr(ReasonInternalError, err, "Lambda could not create a network interface in subnet %s: %v. Retry; if it persists, contact the operator.", subnetID, err)
	}
	switch me.Code {
	case vpc.CodeSubnetNotFound:
		return newErr(ReasonInvalidSubnet, err, "The subnet %s does not exist in this account. Check the function's VpcConfig SubnetIds.", subnetID)
	case vpc.CodeGroupNotFound:
		return newErr(ReasonInvalidSecurityGroup, err, "One of the security groups %v does not exist in this account. Check the function's VpcConfig SecurityGroupIds.", groups)
	case vpc.CodeInsufficientFreeAddresses:
		return newErr(ReasonSubnetOutOfIPAddresses, err, "Lambda was not able to create an ENI in subnet %s because it has no free IP addresses. Free addresses in the subnet or add subnets with free addresses to the function's VpcConfig.", subnetID)
	case vpc.CodeInvalidParameterValue, "SecurityGroupsPerInterfaceLimitExceeded":
		return newErr(ReasonInvalidSecurityGroup, err, "The security groups %v cannot be used with subnet %s: %s", groups, subnetID, me.Message)
	}
	return newErr(ReasonInternalError, err, "Lambda could not create a network interface in subnet %s: %s", subnetID, me.Message)
}
