package lambdaapi

import (
	"github.com/lambdaplane/lambdaplane/internal/control"
)

const timeFormat = "2006-01-02T15:04:05.000-0700"

type envOut struct {
	Variables map[string]string `json:"Variables"`
}

type vpcOut struct {
	SubnetIds               []string `json:"SubnetIds"`
	SecurityGroupIds        []string `json:"SecurityGroupIds"`
	VpcId                   string   `json:"VpcId"`
	Ipv6AllowedForDualStack bool     `json:"Ipv6AllowedForDualStack"`
}

type functionConfiguration struct {
	FunctionName               string            `json:"FunctionName"`
	FunctionArn                string            `json:"FunctionArn"`
	Runtime                    string            `json:"Runtime"`
	Role                       string            `json:"Role"`
	Handler                    string            `json:"Handler"`
	CodeSize                   int64             `json:"CodeSize"`
	Description                string            `json:"Description"`
	Timeout                    int               `json:"Timeout"`
	MemorySize                 int               `json:"MemorySize"`
	LastModified               string            `json:"LastModified"`
	CodeSha256                 string            `json:"CodeSha256"`
	Version                    string            `json:"Version"`
	VpcConfig                  *vpcOut           `json:"VpcConfig,omitempty"`
	Environment                *envOut           `json:"Environment,omitempty"`
	TracingConfig              map[string]string `json:"TracingConfig"`
	RevisionId                 string            `json:"RevisionId"`
	Layers                     []layerOut        `json:"Layers,omitempty"`
	State                      string            `json:"State"`
	StateReason                string            `json:"StateReason,omitempty"`
	StateReasonCode            string            `json:"StateReasonCode,omitempty"`
	LastUpdateStatus           string            `json:"LastUpdateStatus"`
	LastUpdateStatusReason     string            `json:"LastUpdateStatusReason,omitempty"`
	LastUpdateStatusReasonCode string            `json:"LastUpdateStatusReasonCode,omitempty"`
	PackageType                string            `json:"PackageType"`
	Architectures              []string          `json:"Architectures"`
	EphemeralStorage           map[string]int    `json:"EphemeralStorage"`
	SnapStart                  map[string]string `json:"SnapStart"`
	LoggingConfig              map[string]string `json:"LoggingConfig"`
	DeadLetterConfig           map[string]string `json:"DeadLetterConfig,omitempty"`
}

func toWire(c *control.Config) *functionConfiguration {
	arn := control.FunctionARN(c.Region, c.AccountID, c.FunctionName)
	if c.Version != control.LatestVersion {
		arn += ":" + c.Version
	}
	f := &functionConfiguration{
		FunctionName: c.FunctionName, FunctionArn: arn, Runtime: c.Runtime, Role: c.Role, Handler: c.Handler,
		CodeSize: c.CodeSize, Description: c.Description, Timeout: c.Timeout, MemorySize: c.MemorySize,
		LastModified: c.LastModified.UTC().Format(timeFormat), CodeSha256: c.CodeSha256, Version: c.Version,
		TracingConfig: map[string]string{"Mode": "PassThrough"}, RevisionId: c.RevisionID,
		State: c.State, StateReason: c.StateReason, StateReasonCode: c.StateReasonCode,
		LastUpdateStatus: c.LastUpdateStatus, LastUpdateStatusReason: c.LastUpdateStatusReason,
		LastUpdateStatusReasonCode: c.LastUpdateStatusReasonCode,
		PackageType:                c.PackageType, Architectures: c.Architectures,
		EphemeralStorage: map[string]int{"Size": c.EphemeralStorage},
		SnapStart:        map[string]string{"ApplyOn": "None", "OptimizationStatus": "Off"},
		LoggingConfig:    loggingWire(c),
	}
	if len(c.Environment) > 0 {
		f.Environment = &envOut{Variables: c.Environment}
	}
	if c.VpcConfig != nil {
		f.VpcConfig = &vpcOut{SubnetIds: c.VpcConfig.SubnetIDs, SecurityGroupIds: c.VpcConfig.SecurityGroupIDs, VpcId: c.VpcConfig.VpcID, Ipv6AllowedForDualStack: c.VpcConfig.Ipv6DualStack}
	}
	for _, l := range c.Layers {
		f.Layers = append(f.Layers, layerOut{Arn: l.Arn, CodeSize: l.CodeSize})
	}
	if c.DeadLetterArn != "" {
		f.DeadLetterConfig = map[string]string{"TargetArn": c.DeadLetterArn}
	}
	if f.Architectures == nil {
		f.Architectures = []string{"x86_64"}
	}
	return f
}

type aliasConfiguration struct {
	AliasArn        string `json:"AliasArn"`
	Name            string `json:"Name"`
	FunctionVersion string `json:"FunctionVersion"`
	Description     string `json:"Description"`
	RevisionId      string `json:"RevisionId"`
}

func aliasWire(region string, a *control.Alias) *aliasConfiguration {
	return &aliasConfiguration{
		AliasArn: control.QualifiedARN(region, a.AccountID, a.FunctionName, a.Name), Name: a.Name,
		FunctionVersion: a.FunctionVersion, Description: a.Description, RevisionId: a.RevisionID,
	}
}

// layerOut is a function configuration's Layer.
type layerOut struct {
	Arn      string `json:"Arn"`
	CodeSize int64  `json:"CodeSize"`
}

type layerContentOut struct {
	Location   string `json:"Location"`
	CodeSha256 string `json:"CodeSha256"`
	CodeSize   int64  `json:"CodeSize"`
}

// layerVersionOut is PublishLayerVersion's / GetLayerVersion's answer and,
// without Content and LayerArn, a LayerVersionsListItem.
type layerVersionOut struct {
	Content                 *layerContentOut `json:"Content,omitempty"`
	LayerArn                string           `json:"LayerArn,omitempty"`
	LayerVersionArn         string           `json:"LayerVersionArn"`
	Description             string           `json:"Description"`
	CreatedDate             string           `json:"CreatedDate"`
	Version                 int64            `json:"Version"`
	CompatibleRuntimes      []string         `json:"CompatibleRuntimes,omitempty"`
	LicenseInfo             string           `json:"LicenseInfo,omitempty"`
	CompatibleArchitectures []string         `json:"CompatibleArchitectures,omitempty"`
}

func layerVersionWire(v *control.LayerVersion, full bool) *layerVersionOut {
	o := &layerVersionOut{
		LayerVersionArn: v.ARN(), Description: v.Description, CreatedDate: v.Created.UTC().Format(timeFormat),
		Version: v.Version, CompatibleRuntimes: v.CompatibleRuntimes, LicenseInfo: v.LicenseInfo,
		CompatibleArchitectures: v.CompatibleArchitectures,
	}
	if full {
		o.LayerArn = v.LayerARN()
		o.Content = &layerContentOut{Location: "lambdaplane://layers/" + v.Key, CodeSha256: v.CodeSha256, CodeSize: v.CodeSize}
	}
	return o
}

// layersListItem is one entry of ListLayers.
type layersListItem struct {
	LayerName             string           `json:"LayerName"`
	LayerArn              string           `json:"LayerArn"`
	LatestMatchingVersion *layerVersionOut `json:"LatestMatchingVersion"`
}

// loggingWire is the function's LoggingConfig as Lambda returns it.
func loggingWire(c *control.Config) map[string]string {
	l := c.Logging()
	out := map[string]string{"LogFormat": l.LogFormat, "LogGroup": l.LogGroup}
	if l.ApplicationLogLevel != "" {
		out["ApplicationLogLevel"] = l.ApplicationLogLevel
	}
	if l.SystemLogLevel != "" {
		out["SystemLogLevel"] = l.SystemLogLevel
	}
	return out
}
