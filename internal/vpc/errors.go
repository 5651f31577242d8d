package vpc

import (
	"errors"
	"fmt"
)

// Error is a client error carrying the EC2 error code (InvalidVpcID.NotFound,
// DependencyViolation, ...). The API edge writes Code and Message as is.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// EC2 error codes the model returns.
const (
	CodeMissingParameter          = "MissingParameter"
	CodeInvalidParameterValue     = "InvalidParameterValue"
	CodeInvalidParameterCombo     = "InvalidParameterCombination"
	CodeInvalidVpcRange           = "InvalidVpc.Range"
	CodeInvalidSubnetRange        = "InvalidSubnet.Range"
	CodeInvalidSubnetConflict     = "InvalidSubnet.Conflict"
	CodeInvalidGroupDuplicate     = "InvalidGroup.Duplicate"
	CodeInvalidGroupReserved      = "InvalidGroup.Reserved"
	CodeCannotDelete              = "CannotDelete"
	CodeInvalidPermDuplicate      = "InvalidPermission.Duplicate"
	CodeInvalidPermNotFound       = "InvalidPermission.NotFound"
	CodeInvalidPermMalformed      = "InvalidPermission.Malformed"
	CodeDependencyViolation       = "DependencyViolation"
	CodeVpcNotFound               = "InvalidVpcID.NotFound"
	CodeSubnetNotFound            = "InvalidSubnetID.NotFound"
	CodeGroupNotFound             = "InvalidGroup.NotFound"
	CodeInterfaceNotFound         = "InvalidNetworkInterfaceID.NotFound"
	CodeInterfaceInUse            = "InvalidNetworkInterface.InUse"
	CodeRouteTableNotFound        = "InvalidRouteTableID.NotFound"
	CodeRouteNotFound             = "InvalidRoute.NotFound"
	CodeRouteAlreadyExists        = "RouteAlreadyExists"
	CodeGatewayNotFound           = "InvalidInternetGatewayID.NotFound"
	CodeGatewayNotAttached        = "Gateway.NotAttached"
	CodeAlreadyAssociated         = "Resource.AlreadyAssociated"
	CodeNatGatewayNotFound        = "NatGatewayNotFound"
	CodeAssociationNotFound       = "InvalidAssociationID.NotFound"
	CodeInsufficientFreeAddresses = "InsufficientFreeAddressesInSubnet"
	CodeIPInUse                   = "InvalidIPAddress.InUse"
	CodeInvalidID                 = "InvalidID"
)

func errf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// IsCode reports whether err is a *Error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

func missing(param string) *Error {
	return errf(CodeMissingParameter, "The request must contain the parameter %s", param)
}

func invalidValue(param, value, why string) *Error {
	return errf(CodeInvalidParameterValue, "Value (%s) for parameter %s is invalid. %s", value, param, why)
}

// NotFound is the EC2 not-found error for an ID, chosen by its prefix.
func NotFound(id string) *Error {
	switch ResourceType(id) {
	case ResourceVPC:
		return nfVPC(id)
	case ResourceSubnet:
		return nfSubnet(id)
	case ResourceSecurityGroup:
		return nfGroup(id)
	case ResourceInterface:
		return nfInterface(id)
	case ResourceRouteTable:
		return nfRouteTable(id)
	case ResourceInternetGateway:
		return nfIGW(id)
	case ResourceNatGateway:
		return nfNAT(id)
	}
	return errf(CodeInvalidID, "The ID '%s' is not valid", id)
}
