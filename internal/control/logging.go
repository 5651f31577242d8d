package control

import (
	"regexp"
	"sort"
	"strings"
	"time"
)

// LoggingConfig is a function's LoggingConfig: the format of its records
// (Text or JSON), the levels Lambda filters at in JSON format, and the log
// group its records go to.
type LoggingConfig struct {
	LogFormat           string `json:"LogFormat"`
	ApplicationLogLevel string `json:"ApplicationLogLevel,omitempty"`
	SystemLogLevel      string `json:"SystemLogLevel,omitempty"`
	LogGroup            string `json:"LogGroup,omitempty"` // "" = /aws/lambda/<function>
}

// LoggingInput is LoggingConfig as sent (every field optional).
type LoggingInput struct {
	LogFormat           *string `json:"LogFormat"`
	ApplicationLogLevel *string `json:"ApplicationLogLevel"`
	SystemLogLevel      *string `json:"SystemLogLevel"`
	LogGroup            *string `json:"LogGroup"`
}

// Log formats and levels as Lambda names them.
const (
	LogFormatText = "Text"
	LogFormatJSON = "JSON"
)

var (
	appLevels    = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	systemLevels = []string{"DEBUG", "INFO", "WARN"}
	logGroupRE   = regexp.MustCompile(`^[\.\-_/#A-Za-z0-9]+$`)
)

// DefaultLogGroup is the log group of a function without a custom one.
func DefaultLogGroup(function string) string { return "/aws/lambda/" + function }

// LogGroupName is the log group the configuration's records go to.
func (c *Config) LogGroupName() string {
	if c.LoggingConfig != nil && c.LoggingConfig.LogGroup != "" {
		return c.LoggingConfig.LogGroup
	}
	return DefaultLogGroup(c.FunctionName)
}

// Logging is the configuration's LoggingConfig as Lambda returns it: the
// format (Text unless set), the levels in JSON format, the log group.
func (c *Config) Logging() LoggingConfig {
	out := LoggingConfig{LogFormat: LogFormatText}
	if c.LoggingConfig != nil {
		out = *c.LoggingConfig
		if out.LogFormat == "" {
			out.LogFormat = LogFormatText
		}
	}
	if out.LogFormat == LogFormatJSON {
		if out.ApplicationLogLevel == "" {
			out.ApplicationLogLevel = "INFO"
		}
		if out.SystemLogLevel == "" {
			out.SystemLogLevel = "INFO"
		}
	} else {
		out.ApplicationLogLevel, out.SystemLogLevel = "", ""
	}
	out.LogGroup = c.LogGroupName()
	return out
}

// ValidateLogGroupName checks a log group name as CloudWatch Logs does.
func ValidateLogGroupName(field, name string) error {
	if len(name) < 1 || len(name) > 512 || !logGroupRE.MatchString(name) {
		return validation("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+ (and be 1 to 512 characters)", name, field)
	}
	return nil
}

// applyLogging merges a LoggingConfig request into c. Levels are for the
// JSON format only, as on Lambda.
func applyLogging(c *Config, in *LoggingInput) error {
	if in == nil {
		return nil
	}
	cur := LoggingConfig{LogFormat: LogFormatText}
	if c.LoggingConfig != nil {
		cur = *c.LoggingConfig
	}
	if in.LogFormat != nil {
		switch *in.LogFormat {
		case LogFormatText, LogFormatJSON:
			cur.LogFormat = *in.LogFormat
		default:
			return validation("1 validation error detected: Value '%s' at 'loggingConfig.logFormat' failed to satisfy constraint: Member must satisfy enum value set: [JSON, Text]", *in.LogFormat)
		}
	}
	if in.ApplicationLogLevel != nil {
		if !contains(appLevels, *in.ApplicationLogLevel) {
			return validation("1 validation error detected: Value '%s' at 'loggingConfig.applicationLogLevel' failed to satisfy constraint: Member must satisfy enum value set: [%s]", *in.ApplicationLogLevel, strings.Join(appLevels, ", "))
		}
		cur.ApplicationLogLevel = *in.ApplicationLogLevel
	}
	if in.SystemLogLevel != nil {
		if !contains(systemLevels, *in.SystemLogLevel) {
			return validation("1 validation error detected: Value '%s' at 'loggingConfig.systemLogLevel' failed to satisfy constraint: Member must satisfy enum value set: [%s]", *in.SystemLogLevel, strings.Join(systemLevels, ", "))
		}
		cur.SystemLogLevel = *in.SystemLogLevel
	}
	if in.LogGroup != nil {
		if *in.LogGroup != "" {
			if err := ValidateLogGroupName("loggingConfig.logGroup", *in.LogGroup); err != nil {
				return err
			}
		}
		cur.LogGroup = *in.LogGroup
		if cur.LogGroup == DefaultLogGroup(c.FunctionName) {
			cur.LogGroup = ""
		}
	}
	if cur.LogFormat != LogFormatJSON {
		if (in.ApplicationLogLevel != nil && *in.ApplicationLogLevel != "") || (in.SystemLogLevel != nil && *in.SystemLogLevel != "") {
			return invalidParam("ApplicationLogLevel and SystemLogLevel can only be set when LogFormat is JSON: pass LogFormat=JSON with them")
		}
		cur.ApplicationLogLevel, cur.SystemLogLevel = "", ""
	}
	if cur == (LoggingConfig{LogFormat: LogFormatText}) {
		c.LoggingConfig = nil
		return nil
	}
	c.LoggingConfig = &cur
	return nil
}

// GroupFunction is a function writing to a log group.
type GroupFunction struct {
	Name    string
	Created time.Time
}

// LogGroupFunctions maps the account's log groups that functions write to
// onto those functions (sorted by name), from the cache.
func (s *Service) LogGroupFunctions(acct string) map[string][]GroupFunction {
	out := map[string][]GroupFunction{}
	s.cache.mu.RLock()
	for _, c := range s.cache.fns {
		if c.v != nil && c.v.Latest.AccountID == acct {
			g := c.v.Latest.LogGroupName()
			out[g] = append(out[g], GroupFunction{Name: c.v.Latest.FunctionName, Created: c.v.Created})
		}
	}
	s.cache.mu.RUnlock()
	for _, fs := range out {
		sort.Slice(fs, func(i, j int) bool { return fs[i].Name < fs[j].Name })
	}
	return out
}
