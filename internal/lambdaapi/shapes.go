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
	FunctionName               string             `json:"FunctionName"`
	FunctionArn                string             `json:"FunctionArn"`
	Runtime                    string             `json:"Runtime"`
	Role                       string             `json:"Role"`
	Handler                    string             `json:"Handler"`
	CodeSize                   int64              `json:"CodeSize"`
	Description                string             `json:"Description"`
	Timeout                    int                `json:"Timeout"`
	MemorySize                 int                `json:"MemorySize"`
	LastModified               string             `json:"LastModified"`
	CodeSha256                 string             `json:"CodeSha256"`
	Version                    string             `json:"Version"`
	VpcConfig                  *vpcOut            `json:"VpcConfig,omitempty"`
	Environment                *envOut            `json:"Environment,omitempty"`
	TracingConfig              map[string]string  `json:"TracingConfig"`
	RevisionId                 string             `json:"RevisionId"`
	Layers                     []control.LayerRef `json:"Layers,omitempty"`
	State                      string             `json:"State"`
	StateReason                string             `json:"StateReason,omitempty"`
	StateReasonCode            string             `json:"StateReasonCode,omitempty"`
	LastUpdateStatus           string             `json:"LastUpdateStatus"`
	LastUpdateStatusReason     string             `json:"LastUpdateStatusReason,omitempty"`
	LastUpdateStatusReasonCode string             `json:"LastUpdateStatusReasonCode,omitempty"`
	PackageType                string             `json:"PackageType"`
	Architectures              []string           `json:"Architectures"`
	EphemeralStorage           map[string]int     `json:"EphemeralStorage"`
	SnapStart                  map[string]string  `json:"SnapStart"`
	LoggingConfig              map[string]string  `json:"LoggingConfig"`
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
		TracingConfig: map[string]string{"Mode": "PassThrough"}, RevisionId: c.RevisionID, Layers: c.Layers,
		State: c.State, StateReason: c.StateReason, StateReasonCode: c.StateReasonCode,
		LastUpdateStatus: c.LastUpdateStatus, LastUpdateStatusReason: c.LastUpdateStatusReason,
		LastUpdateStatusReasonCode: c.LastUpdateStatusReasonCode,
		PackageType:                c.PackageType, Architectures: c.Architectures,
		EphemeralStorage: map[string]int{"Size": c.EphemeralStorage},
		SnapStart:        map[string]string{"ApplyOn": "None", "OptimizationStatus": "Off"},
		LoggingConfig:    map[string]string{"LogFormat": "Text", "LogGroup": "/aws/lambda/" + c.FunctionName},
	}
	if len(c.Environment) > 0 {
		f.Environment = &envOut{Variables: c.Environment}
	}
	if c.VpcConfig != nil {
		f.VpcConfig = &vpcOut{SubnetIds: c.VpcConfig.SubnetIDs, SecurityGroupIds: c.VpcConfig.SecurityGroupIDs, VpcId: c.VpcConfig.VpcID, Ipv6AllowedForDualStack: c.VpcConfig.Ipv6DualStack}
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
