package control

// Inputs use Lambda's JSON field names so the API edge can decode straight
// into them. Optional fields are pointers: nil means "not given".

// CodeInput is FunctionCode.
type CodeInput struct {
	ZipFile         []byte  `json:"ZipFile"`
	S3Bucket        *string `json:"S3Bucket"`
	S3Key           *string `json:"S3Key"`
	S3ObjectVersion *string `json:"S3ObjectVersion"`
	ImageUri        *string `json:"ImageUri"`
}

// EnvInput is Environment.
type EnvInput struct {
	Variables map[string]string `json:"Variables"`
}

// EphemeralInput is EphemeralStorage.
type EphemeralInput struct {
	Size int `json:"Size"`
}

// VpcInput is VpcConfig as sent.
type VpcInput struct {
	SubnetIds               []string `json:"SubnetIds"`
	SecurityGroupIds        []string `json:"SecurityGroupIds"`
	Ipv6AllowedForDualStack *bool    `json:"Ipv6AllowedForDualStack"`
}

// CreateInput is CreateFunction's request.
type CreateInput struct {
	FunctionName     string          `json:"FunctionName"`
	Runtime          string          `json:"Runtime"`
	Role             string          `json:"Role"`
	Handler          string          `json:"Handler"`
	Code             *CodeInput      `json:"Code"`
	Description      string          `json:"Description"`
	Timeout          *int            `json:"Timeout"`
	MemorySize       *int            `json:"MemorySize"`
	Publish          bool            `json:"Publish"`
	PackageType      string          `json:"PackageType"`
	Environment      *EnvInput       `json:"Environment"`
	EphemeralStorage *EphemeralInput `json:"EphemeralStorage"`
	Architectures    []string        `json:"Architectures"`
	VpcConfig        *VpcInput       `json:"VpcConfig"`
	Layers           []string        `json:"Layers"`
	KMSKeyArn        string          `json:"KMSKeyArn"`
	DeadLetterConfig *struct {
		TargetArn string `json:"TargetArn"`
	} `json:"DeadLetterConfig"`
	Tags          map[string]string `json:"Tags"`
	LoggingConfig *LoggingInput     `json:"LoggingConfig"`
}

// UpdateCodeInput is UpdateFunctionCode's request.
type UpdateCodeInput struct {
	ZipFile         []byte   `json:"ZipFile"`
	S3Bucket        *string  `json:"S3Bucket"`
	S3Key           *string  `json:"S3Key"`
	S3ObjectVersion *string  `json:"S3ObjectVersion"`
	ImageUri        *string  `json:"ImageUri"`
	Publish         bool     `json:"Publish"`
	DryRun          bool     `json:"DryRun"`
	RevisionId      string   `json:"RevisionId"`
	Architectures   []string `json:"Architectures"`
}

// UpdateConfigInput is UpdateFunctionConfiguration's request.
type UpdateConfigInput struct {
	Role             *string          `json:"Role"`
	Handler          *string          `json:"Handler"`
	Description      *string          `json:"Description"`
	Timeout          *int             `json:"Timeout"`
	MemorySize       *int             `json:"MemorySize"`
	Runtime          *string          `json:"Runtime"`
	Environment      *EnvInput        `json:"Environment"`
	EphemeralStorage *EphemeralInput  `json:"EphemeralStorage"`
	VpcConfig        *VpcInput        `json:"VpcConfig"`
	Layers           []string         `json:"Layers"`
	RevisionId       string           `json:"RevisionId"`
	LoggingConfig    *LoggingInput    `json:"LoggingConfig"`
	DeadLetterConfig *DeadLetterInput `json:"DeadLetterConfig"`
}

// AliasInput is CreateAlias / UpdateAlias.
type AliasInput struct {
	Name            string  `json:"Name"`
	FunctionVersion *string `json:"FunctionVersion"`
	Description     *string `json:"Description"`
	RevisionId      string  `json:"RevisionId"`
	RoutingConfig   *struct {
		AdditionalVersionWeights map[string]float64 `json:"AdditionalVersionWeights"`
	} `json:"RoutingConfig"`
}

// PublishLayerInput is PublishLayerVersion's request body.
type PublishLayerInput struct {
	Content *struct {
		ZipFile             []byte  `json:"ZipFile"`
		S3Bucket            *string `json:"S3Bucket"`
		S3Key               *string `json:"S3Key"`
		S3ObjectVersion     *string `json:"S3ObjectVersion"`
		S3ObjectStorageMode *string `json:"S3ObjectStorageMode"`
	} `json:"Content"`
	Description             string   `json:"Description"`
	CompatibleRuntimes      []string `json:"CompatibleRuntimes"`
	CompatibleArchitectures []string `json:"CompatibleArchitectures"`
	LicenseInfo             string   `json:"LicenseInfo"`
}
