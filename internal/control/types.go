package control

import "time"

// Config is one function configuration: $LATEST (mutable) or a published
// version (immutable). Field names follow Lambda's FunctionConfiguration.
type Config struct {
	FunctionName     string            `json:"FunctionName"`
	AccountID        string            `json:"AccountID"`
	Region           string            `json:"Region"`
	Runtime          string            `json:"Runtime"`
	Role             string            `json:"Role"`
	Handler          string            `json:"Handler"`
	Description      string            `json:"Description"`
	Timeout          int               `json:"Timeout"`
	MemorySize       int               `json:"MemorySize"`
	EphemeralStorage int               `json:"EphemeralStorage"`
	Architectures    []string          `json:"Architectures"`
	Environment      map[string]string `json:"Environment,omitempty"`
	CodeSha256       string            `json:"CodeSha256"`
	CodeSize         int64             `json:"CodeSize"`
	CodeKey          string            `json:"CodeKey"` // hex SHA-256: object-store key and extraction dir
	CodeUnzipped     int64             `json:"CodeUnzipped,omitempty"`
	Version          string            `json:"Version"`
	VersionDesc      string            `json:"VersionDesc,omitempty"`
	LastModified     time.Time         `json:"LastModified"`
	RevisionID       string            `json:"RevisionId"`
	PackageType      string            `json:"PackageType"`
	VpcConfig        *VpcConfig        `json:"VpcConfig,omitempty"`
	Layers           []LayerRef        `json:"Layers,omitempty"`
	// DeadLetterArn is DeadLetterConfig.TargetArn: the SQS queue that
	// receives Event invocations that failed every attempt.
	DeadLetterArn string         `json:"DeadLetterArn,omitempty"`
	LoggingConfig *LoggingConfig `json:"LoggingConfig,omitempty"` // nil: Text to /aws/lambda/<name>

	State                      string `json:"State"`
	StateReason                string `json:"StateReason,omitempty"`
	StateReasonCode            string `json:"StateReasonCode,omitempty"`
	LastUpdateStatus           string `json:"LastUpdateStatus"`
	LastUpdateStatusReason     string `json:"LastUpdateStatusReason,omitempty"`
	LastUpdateStatusReasonCode string `json:"LastUpdateStatusReasonCode,omitempty"`
}

// VpcConfig is the function's VPC attachment.
type VpcConfig struct {
	SubnetIDs        []string `json:"SubnetIds"`
	SecurityGroupIDs []string `json:"SecurityGroupIds"`
	VpcID            string   `json:"VpcId"`
	Ipv6DualStack    bool     `json:"Ipv6AllowedForDualStack"`
	// NetUser names this configuration's share of its Hyperplane ENIs:
	// the function ARN plus a hash of the subnet and security-group sets,
	// so a VPC change can take the new share before releasing the old.
	NetUser string `json:"NetUser"`
}

// LayerRef is a layer version attached to a function. Key and Unzipped are
// copied from the layer version when it is attached, so the function keeps
// working after the layer version is deleted (as on AWS).
type LayerRef struct {
	Arn      string `json:"Arn"`
	CodeSize int64  `json:"CodeSize"`
	Key      string `json:"Key"`      // hex SHA-256 of the layer zip: object-store key
	Unzipped int64  `json:"Unzipped"` // bytes of file content after decompression
}

// Function is the durable record of a function: its $LATEST configuration
// and account-level settings. Published versions are separate records.
type Function struct {
	Latest              Config `json:"Latest"`
	NextVersion         int    `json:"NextVersion"`
	ReservedConcurrency *int   `json:"ReservedConcurrency,omitempty"`
	// NetUsers are the ENI shares this function holds (for release).
	NetUsers []string `json:"NetUsers,omitempty"`
	// Tags are the function's tags (all its versions share them).
	Tags    map[string]string `json:"Tags,omitempty"`
	Created time.Time         `json:"Created"`
}

// Alias points a name at a version.
type Alias struct {
	AccountID       string    `json:"AccountID"`
	FunctionName    string    `json:"FunctionName"`
	Name            string    `json:"Name"`
	FunctionVersion string    `json:"FunctionVersion"`
	Description     string    `json:"Description"`
	RevisionID      string    `json:"RevisionId"`
	Updated         time.Time `json:"Updated"`
}

// Function states and update statuses, as Lambda names them.
const (
	StatePending  = "Pending"
	StateActive   = "Active"
	StateInactive = "Inactive"
	StateFailed   = "Failed"

	ReasonCreating  = "Creating"
	ReasonRestoring = "Restoring"
	ReasonIdle      = "Idle"

	UpdateInProgress = "InProgress"
	UpdateSuccessful = "Successful"
	UpdateFailed     = "Failed"

	LatestVersion = "$LATEST"
)
