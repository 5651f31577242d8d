package control

import (
	"strings"
	"testing"
)

func code(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := err.(*Error); ok {
		return e.Code
	}
	return "untyped"
}

func TestValidateConfig(t *testing.T) {
	s := &Service{}
	base := func() Config {
		return Config{Timeout: 3, MemorySize: 128, EphemeralStorage: 512, Handler: "bootstrap"}
	}
	cases := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"timeout 0", func(c *Config) { c.Timeout = 0 }, "ValidationException"},
		{"timeout 900", func(c *Config) { c.Timeout = 900 }, ""},
		{"timeout 901", func(c *Config) { c.Timeout = 901 }, "ValidationException"},
		{"memory 127", func(c *Config) { c.MemorySize = 127 }, "ValidationException"},
		{"memory 10240", func(c *Config) { c.MemorySize = 10240 }, ""},
		{"memory 10241", func(c *Config) { c.MemorySize = 10241 }, "ValidationException"},
		{"ephemeral 511", func(c *Config) { c.EphemeralStorage = 511 }, "ValidationException"},
		{"ephemeral 10241", func(c *Config) { c.EphemeralStorage = 10241 }, "ValidationException"},
		{"handler with space", func(c *Config) { c.Handler = "a b" }, "ValidationException"},
		{"handler too long", func(c *Config) { c.Handler = strings.Repeat("h", 129) }, "ValidationException"},
		{"description too long", func(c *Config) { c.Description = strings.Repeat("d", 257) }, "ValidationException"},
		{"env ok", func(c *Config) { c.Environment = map[string]string{"A1": "x"} }, ""},
		{"env bad key", func(c *Config) { c.Environment = map[string]string{"1A": "x"} }, "ValidationException"},
		{"env reserved", func(c *Config) { c.Environment = map[string]string{"AWS_REGION": "x", "AWS_LAMBDA_RUNTIME_API": "y"} }, "InvalidParameterValueException"},
		{"env 4KB", func(c *Config) { c.Environment = map[string]string{"BIG": strings.Repeat("x", 4093)} }, ""},
		{"env over 4KB", func(c *Config) { c.Environment = map[string]string{"BIG": strings.Repeat("x", 4094)} }, "InvalidParameterValueException"},
	}
	for _, c := range cases {
		cfg := base()
		c.mut(&cfg)
		if got := code(s.validateConfig(&cfg)); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
	err := validateEnv(map[string]string{"AWS_REGION": "x", "AWS_LAMBDA_RUNTIME_API": "y"})
	if !strings.Contains(err.Error(), "Reserved keys used in this request: AWS_LAMBDA_RUNTIME_API, AWS_REGION") {
		t.Errorf("reserved-key message names the keys: %v", err)
	}
}

func TestValidateRoleAndArchitecture(t *testing.T) {
	for role, want := range map[string]string{
		"arn:aws:iam::123456789012:role/r":               "",
		"arn:aws:iam::123456789012:role/service-role/x1": "",
		"arn:aws:iam::123:role/r":                        "ValidationException",
		"role":                                           "ValidationException",
	} {
		if got := code(validateRole(role)); got != want {
			t.Errorf("role %q: %q, want %q", role, got, want)
		}
	}
	if got := code(validateArchitectures([]string{"arm64"})); got != "InvalidParameterValueException" {
		t.Errorf("arm64: %q", got)
	}
	if got := code(validateArchitectures([]string{"x86_64", "arm64"})); got != "ValidationException" {
		t.Errorf("two architectures: %q", got)
	}
	if got := code(validateArchitectures(nil)); got != "" {
		t.Errorf("none: %q", got)
	}
}

func TestPage(t *testing.T) {
	items := []string{"a", "b", "c", "d", "e"}
	id := func(s string) string { return s }
	var all []string
	marker := ""
	for i := 0; i < 10; i++ {
		got, next, err := page(items, marker, 2, id)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
		if next == "" {
			break
		}
		marker = next
	}
	if strings.Join(all, "") != "abcde" {
		t.Fatalf("paged %v", all)
	}
	if _, _, err := page(items, "zz", 2, id); code(err) != "InvalidParameterValueException" {
		t.Errorf("unknown marker: %v", err)
	}
	if got, next, _ := page(items, "", 5, id); len(got) != 5 || next != "" {
		t.Errorf("exact page: %v %q", got, next)
	}
	if err := checkMaxItems(10001); code(err) != "ValidationException" {
		t.Errorf("MaxItems 10001: %v", err)
	}
}
