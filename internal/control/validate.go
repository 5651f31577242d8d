package control

import (
	"regexp"
	"sort"
	"strings"
)

var (
	roleRe   = regexp.MustCompile(`^arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$`)
	envKeyRe = regexp.MustCompile(`^[a-zA-Z]([a-zA-Z0-9_])+$`)
)

// Limits as Lambda documents them.
const (
	MinTimeout, MaxTimeout, DefaultTimeout       = 1, 900, 3
	MinMemory, MaxMemory, DefaultMemory          = 128, 10240, 128
	MinEphemeral, MaxEphemeral, DefaultEphemeral = 512, 10240, 512
	MaxEnvBytes                                  = 4096
	MaxDescription                               = 256
	MaxHandler                                   = 128
	MaxSubnets, MaxSecurityGroups                = 16, 5
)

// reservedEnv are the variables the platform sets and users may not override.
var reservedEnv = map[string]bool{
	"_HANDLER": true, "_X_AMZN_TRACE_ID": true, "AWS_DEFAULT_REGION": true, "AWS_REGION": true,
	"AWS_EXECUTION_ENV": true, "AWS_LAMBDA_FUNCTION_NAME": true, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": true,
	"AWS_LAMBDA_FUNCTION_VERSION": true, "AWS_LAMBDA_INITIALIZATION_TYPE": true, "AWS_LAMBDA_LOG_GROUP_NAME": true,
	"AWS_LAMBDA_LOG_STREAM_NAME": true, "AWS_ACCESS_KEY": true, "AWS_ACCESS_KEY_ID": true,
	"AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true, "AWS_LAMBDA_RUNTIME_API": true,
	"LAMBDA_TASK_ROOT": true, "LAMBDA_RUNTIME_DIR": true,
}

// IsReservedEnv reports whether key is set by the platform.
func IsReservedEnv(key string) bool { return reservedEnv[key] }

func validateName(name string) error {
	if !nameRe.MatchString(name) {
		return badName(name)
	}
	return nil
}

func validateRole(role string) error {
	if !roleRe.MatchString(role) {
		return validation("1 validation error detected: Value '%s' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+", role)
	}
	return nil
}

func validateRange(field string, v, lo, hi int) error {
	if v < lo {
		return validation("1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value greater than or equal to %d", v, field, lo)
	}
	if v > hi {
		return validation("1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value less than or equal to %d", v, field, hi)
	}
	return nil
}

func validateHandler(h string) error {
	if len(h) > MaxHandler {
		return validation("1 validation error detected: Value '%s' at 'handler' failed to satisfy constraint: Member must have length less than or equal to %d", h, MaxHandler)
	}
	if h != "" && strings.ContainsAny(h, " \t\r\n") {
		return validation("1 validation error detected: Value '%s' at 'handler' failed to satisfy constraint: Member must satisfy regular expression pattern: [^\\s]+", h)
	}
	return nil
}

func validateDescription(d string) error {
	if len(d) > MaxDescription {
		return validation("1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to %d", MaxDescription)
	}
	return nil
}

func validateArchitectures(a []string) error {
	if len(a) == 0 {
		return nil
	}
	if len(a) > 1 {
		return validation("1 validation error detected: Value '%v' at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1", a)
	}
	if a[0] != "x86_64" {
		return invalidParam("Architecture %q is not supported by this lambdaplane host; use x86_64 (omit --architectures)", a[0])
	}
	return nil
}

func validateEnv(env map[string]string) error {
	size := 0
	var reserved []string
	for k, v := range env {
		if !envKeyRe.MatchString(k) {
			return validation("1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]")
		}
		if reservedEnv[k] {
			reserved = append(reserved, k)
		}
		size += len(k) + len(v)
	}
	if len(reserved) > 0 {
		sort.Strings(reserved)
		return invalidParam("Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: %s", strings.Join(reserved, ", "))
	}
	if size > MaxEnvBytes {
		return invalidParam("Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: %d bytes", size)
	}
	return nil
}

func validateVpc(v *VpcConfig) error {
	if v == nil {
		return nil
	}
	if len(v.SubnetIDs) > MaxSubnets {
		return validation("1 validation error detected: Value at 'vpcConfig.subnetIds' failed to satisfy constraint: Member must have length less than or equal to %d", MaxSubnets)
	}
	if len(v.SecurityGroupIDs) > MaxSecurityGroups {
		return validation("1 validation error detected: Value at 'vpcConfig.securityGroupIds' failed to satisfy constraint: Member must have length less than or equal to %d", MaxSecurityGroups)
	}
	return nil
}
