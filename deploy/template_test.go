package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/awslabs/goformation/v7/schema"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/keyrot/keyrot/internal/config"
)

const (
	templatePath = "key_rotation.yaml"
	rootCopyPath = "../key_rotation.yaml"
	// codeZip and apiCodeZip are where the functions' Code point, relative
	// to deploy/; the Makefile's lambda target must write the zips there.
	codeZip    = "../build/keyrot-lambda.zip"
	apiCodeZip = "../build/keyrot-api-lambda.zip"
	// apiKeysJSON is an ApiKeys parameter: keyrot's keys JSON, hashes only.
	apiKeysJSON = `[{"name":"ci","hash":"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","users":["ci-*"],"list":false}]`

	testAccount = "123456789012"
	testRegion  = "eu-west-1"
	testStack   = "iam-key-rotation"
)

// deployments are the parameter sets the template is checked with: the
// seed's command (only the two emails), one that flips every condition but
// the API's, and one without the API.
var deployments = []struct {
	name   string
	params map[string]string
}{
	{
		name: "seed command",
		params: map[string]string{
			"SenderEmail": "keys@example.com",
			"AdminEmail":  "admin@example.com",
		},
	},
	{
		name: "existing key and topic, users by name",
		params: map[string]string{
			"SenderEmail":          "keys@example.com",
			"AdminEmail":           "admin@example.com",
			"CreateSenderIdentity": "false",
			"ApiUrl":               "https://keyrot.example.com",
			"ApiKeys":              apiKeysJSON,
			"ManagedUserNames":     "ci-deployer,app-uploader",
			"ManagedUserTag":       "",
			"ManagedUserPath":      "/ci/",
			"ExemptGroup":          "break-glass",
			"ExemptTag":            "keyrot:exempt=true",
			"UnmanagedKeys":        "report",
			"RotateEvery":          "90d",
			"DeactivateAfter":      "7d",
			"DeleteAfter":          "7d",
			"SecretPrefix":         "ci/keys/",
			"KmsKeyArn":            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
			"Architecture":         "x86_64",
			"FunctionTimeout":      "120",
			"ReservedConcurrency":  "none",
			"LogLevel":             "debug",
			"LogRetentionDays":     "365",
			"AlarmTopic":           "arn:aws:sns:eu-west-1:123456789012:ops-alarms",
			"BulkObserve":          "true",
			"EventBus":             "keyrot-events",
		},
	},
	{
		name: "no API",
		params: map[string]string{
			"SenderEmail": "keys@example.com",
			"AdminEmail":  "admin@example.com",
			"ServeApi":    "false",
		},
	},
}

// configEnv is every environment variable keyrot's config reads, from
// the config tree.
var configEnv = config.EnvNames()

// policyActions is, for each role's policy, every action it may grant: the
// calls its function makes. A new grant must be added here on purpose.
var policyActions = map[string][]string{
	"RolePolicy":    roleActions,
	"ApiRolePolicy": apiRoleActions,
}

// roleActions are the rotation function's calls.
var roleActions = []string{
	"iam:GetUser", "iam:ListUserTags", "iam:ListAccessKeys", "iam:CreateAccessKey",
	"iam:UpdateAccessKey", "iam:DeleteAccessKey", "iam:GetAccessKeyLastUsed",
	"iam:ListUsers", "iam:GetGroup",
	"iam:GetAccountAuthorizationDetails", "iam:GenerateCredentialReport", "iam:GetCredentialReport",
	"secretsmanager:ListSecrets",
	"secretsmanager:CreateSecret", "secretsmanager:DescribeSecret",
	"secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
	"secretsmanager:UpdateSecretVersionStage",
	"secretsmanager:TagResource", "secretsmanager:UntagResource",
	"secretsmanager:PutResourcePolicy",
	"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey",
	"ses:SendEmail",
	"events:PutEvents",
	"logs:CreateLogStream", "logs:PutLogEvents",
}

// apiRoleActions are the API function's calls: it reads, and writes nothing.
var apiRoleActions = []string{
	"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
	"secretsmanager:ListSecrets", "secretsmanager:BatchGetSecretValue",
	"kms:Decrypt",
	"logs:CreateLogStream", "logs:PutLogEvents",
}

// starResourceExceptions are the role statements allowed Resource "*", by
// Sid, with the only actions each may hold: AWS offers no narrower resource
// for them (see the comments in the template and deploy/README.md).
var starResourceExceptions = map[string][]string{
	"FindUsersByTag": {"iam:ListUsers"}, // IAM ListUsers has no resource type
	// Bulk observation's account-wide reads: none has a resource type.
	"ReadAccountInBulk": {"iam:GetAccountAuthorizationDetails", "iam:GenerateCredentialReport", "iam:GetCredentialReport"},
	"ListSecretsInBulk": {"secretsmanager:ListSecrets"},
	// Neither has a resource type; BatchGetSecretValue also needs
	// GetSecretValue on each secret, which is scoped to the prefix.
	"ListManagedSecrets": {"secretsmanager:ListSecrets", "secretsmanager:BatchGetSecretValue"},
}

// TestTemplateSchema resolves the template for each deployment as
// CloudFormation would and validates the template and every resource
// against the CloudFormation resource schema that goformation ships.
func TestTemplateSchema(t *testing.T) {
	raw := readTemplate(t, templatePath)
	v := newValidator(t)
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) {
			tpl := resolve(t, raw, d.params)
			packageCode(t, tpl)
			if err := v.root.Validate(tpl); err != nil {
				t.Fatalf("template fails the CloudFormation schema: %v", err)
			}
			resources := tpl["Resources"].(map[string]any)
			if len(resources) == 0 {
				t.Fatal("no resources")
			}
			for _, name := range sortedKeys(resources) {
				res := resources[name].(map[string]any)
				typ, _ := res["Type"].(string)
				sch := v.resource(t, typ)
				if err := sch.Validate(res); err != nil {
					t.Errorf("resource %s (%s) fails its schema: %v", name, typ, err)
				}
			}
			// goformation's typed model must know every resource type too.
			// (Only the resources: its Parameter type wants MinValue as a
			// number where its schema wants a string; CloudFormation takes both.
			// And without InvokedViaFunctionUrl, newer than its model.)
			typedView := map[string]any{}
			for name, r := range resources {
				res := maps.Clone(r.(map[string]any))
				if p, ok := res["Properties"].(map[string]any); ok && res["Type"] == "AWS::Lambda::Permission" {
					p = maps.Clone(p)
					delete(p, "InvokedViaFunctionUrl")
					res["Properties"] = p
				}
				typedView[name] = res
			}
			js, err := json.Marshal(map[string]any{"Resources": typedView})
			if err != nil {
				t.Fatal(err)
			}
			typed, err := goformation.ParseJSONWithOptions(js, &intrinsics.ProcessorOptions{NoProcess: true})
			if err != nil {
				t.Fatalf("goformation: parse resolved template: %v", err)
			}
			for name, r := range typed.Resources {
				if _, ok := r.(*cloudformation.CustomResource); ok {
					t.Errorf("resource %s: type %s unknown to goformation", name, r.AWSCloudFormationType())
				}
			}
		})
	}
}

// TestTemplateResources checks that the resources the issue asks for are
// there, with the settings that matter.
func TestTemplateResources(t *testing.T) {
	raw := readTemplate(t, templatePath)
	tpl := resolve(t, raw, deployments[0].params)
	want := map[string]string{
		"Function":              "AWS::Lambda::Function",
		"Schedule":              "AWS::Events::Rule",
		"SchedulePermission":    "AWS::Lambda::Permission",
		"Role":                  "AWS::IAM::Role",
		"RolePolicy":            "AWS::IAM::Policy",
		"Key":                   "AWS::KMS::Key",
		"KeyAlias":              "AWS::KMS::Alias",
		"SenderIdentity":        "AWS::SES::EmailIdentity",
		"LogGroup":              "AWS::Logs::LogGroup",
		"ErrorsAlarm":           "AWS::CloudWatch::Alarm",
		"RotationFailuresAlarm": "AWS::CloudWatch::Alarm",
		"Topic":                 "AWS::SNS::Topic",
		"FunctionInvokeConfig":  "AWS::Lambda::EventInvokeConfig",
	}
	for name, typ := range want {
		if got := resourceType(tpl, name); got != typ {
			t.Errorf("resource %s: type %q, want %q", name, got, typ)
		}
	}

	fn := props(t, tpl, "Function")
	checks := []struct {
		what      string
		got, want any
	}{
		{"Function.Runtime", fn["Runtime"], "provided.al2023"},
		{"Function.Handler", fn["Handler"], "bootstrap"},
		{"Function.Architectures", fn["Architectures"], []any{"arm64"}},
		{"Function.Code (local path for aws cloudformation package)", fn["Code"], codeZip},
		{"Function.ReservedConcurrentExecutions", fn["ReservedConcurrentExecutions"], float64(1)},
		{"Function.LoggingConfig.LogGroup", dig(fn, "LoggingConfig", "LogGroup"), "ref:LogGroup"},
		{"Schedule.ScheduleExpression", props(t, tpl, "Schedule")["ScheduleExpression"], "rate(1 minute)"},
		{"Key.EnableKeyRotation", props(t, tpl, "Key")["EnableKeyRotation"], true},
		{"KeyAlias.AliasName", props(t, tpl, "KeyAlias")["AliasName"], "alias/" + testStack},
		{"SenderIdentity.EmailIdentity", props(t, tpl, "SenderIdentity")["EmailIdentity"], "keys@example.com"},
		{"LogGroup.RetentionInDays", props(t, tpl, "LogGroup")["RetentionInDays"], float64(90)},
		{"Topic.Subscription", props(t, tpl, "Topic")["Subscription"], []any{map[string]any{"Protocol": "email", "Endpoint": "admin@example.com"}}},
		{"ErrorsAlarm.MetricName", props(t, tpl, "ErrorsAlarm")["MetricName"], "Errors"},
		{"ErrorsAlarm.AlarmActions", props(t, tpl, "ErrorsAlarm")["AlarmActions"], []any{"ref:Topic"}},
		{"RotationFailuresAlarm.Namespace", props(t, tpl, "RotationFailuresAlarm")["Namespace"], "keyrot"},
		{"FunctionInvokeConfig.MaximumRetryAttempts", props(t, tpl, "FunctionInvokeConfig")["MaximumRetryAttempts"], float64(0)},
		{"Role has no fixed name (CAPABILITY_IAM suffices)", props(t, tpl, "Role")["RoleName"], nil},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.what, c.got, c.want)
		}
	}

	env, _ := dig(fn, "Environment", "Variables").(map[string]any)
	for name := range env {
		if !slices.Contains(configEnv, name) {
			t.Errorf("Function sets %s, which keyrot's config does not read", name)
		}
	}
	wantEnv := map[string]string{
		"KEYROT_USERS":            "",
		"KEYROT_USER_TAG":         "keyrot:managed=true",
		"KEYROT_PATH_PREFIX":      "/",
		"KEYROT_ROTATE_EVERY":     "5m",
		"KEYROT_DEACTIVATE_AFTER": "2m",
		"KEYROT_DELETE_AFTER":     "1m",
		"KEYROT_SECRET_PREFIX":    "iam-key-rotation/",
		"KEYROT_KMS_KEY_ID":       "arn:aws:test:" + testRegion + ":" + testAccount + ":Key/Arn",
		"KEYROT_NOTIFY_VIA":       "ses",
		"KEYROT_NOTIFY_SENDER":    "keys@example.com",
		"KEYROT_NOTIFY_ADMIN":     "admin@example.com",
		"KEYROT_LOG_FORMAT":       "json",
		"KEYROT_BULK_OBSERVE":     "false",
		"LOG_LEVEL":               "info",
	}
	for name, want := range wantEnv {
		if got := env[name]; got != want {
			t.Errorf("Function env %s = %#v, want %q", name, got, want)
		}
	}

	// The other deployment: users by name, existing key and topic.
	alt := resolve(t, raw, deployments[1].params)
	for _, name := range []string{"Key", "KeyAlias", "Topic", "SenderIdentity"} {
		if got := resourceType(alt, name); got != "" {
			t.Errorf("with an existing key, topic and identity, resource %s (%s) is still created", name, got)
		}
	}
	altEnv := dig(props(t, alt, "Function"), "Environment", "Variables").(map[string]any)
	if got, want := altEnv["KEYROT_USERS"], "ci-deployer,app-uploader"; got != want {
		t.Errorf("KEYROT_USERS = %#v, want %q", got, want)
	}
	if got, want := altEnv["KEYROT_KMS_KEY_ID"], deployments[1].params["KmsKeyArn"]; got != want {
		t.Errorf("KEYROT_KMS_KEY_ID = %#v, want %q", got, want)
	}
	for name, want := range map[string]string{"KEYROT_NOTIFY_EVENTBRIDGE_ENABLED": "true", "KEYROT_NOTIFY_EVENTBRIDGE_BUS": "keyrot-events"} {
		if got := altEnv[name]; got != want {
			t.Errorf("EventBus keyrot-events: %s = %#v, want %q", name, got, want)
		}
	}
	if got := dig(props(t, tpl, "Function"), "Environment", "Variables").(map[string]any)["KEYROT_NOTIFY_EVENTBRIDGE_ENABLED"]; got != "false" {
		t.Errorf("no EventBus: KEYROT_NOTIFY_EVENTBRIDGE_ENABLED = %#v, want false", got)
	}
	if got, want := altEnv["KEYROT_BULK_OBSERVE"], "true"; got != want {
		t.Errorf("BulkObserve true: KEYROT_BULK_OBSERVE = %#v, want %q", got, want)
	}
	if got, want := props(t, tpl, "Function")["MemorySize"], float64(128); got != want {
		t.Errorf("Function.MemorySize = %#v, want %v", got, want)
	}
	if got, want := props(t, alt, "Function")["MemorySize"], float64(256); got != want {
		t.Errorf("BulkObserve true: Function.MemorySize = %#v, want %v (room for a pass's account-wide reads)", got, want)
	}
	if got := props(t, alt, "Function")["ReservedConcurrentExecutions"]; got != nil {
		t.Errorf("ReservedConcurrency none: ReservedConcurrentExecutions = %#v, want unset", got)
	}
}

// TestTemplateSeedParameters checks the parameters the seed's deploy
// command passes, and the ones the issue names.
func TestTemplateSeedParameters(t *testing.T) {
	raw := readTemplate(t, templatePath)
	params := raw["Parameters"].(map[string]any)
	for _, name := range []string{"SenderEmail", "AdminEmail"} {
		p, ok := params[name].(map[string]any)
		if !ok {
			t.Fatalf("parameter %s missing: the seed's deploy command passes it", name)
		}
		if got, want := p["Type"], "String"; got != want {
			t.Errorf("parameter %s: Type %v, want %v", name, got, want)
		}
		if _, ok := p["Default"]; ok {
			t.Errorf("parameter %s has a default: the seed makes the deployer name it", name)
		}
	}
	// Every other parameter has a default, so the seed's command, which
	// passes only the two emails, deploys as written.
	for name, p := range params {
		if name == "SenderEmail" || name == "AdminEmail" {
			continue
		}
		if _, ok := p.(map[string]any)["Default"]; !ok {
			t.Errorf("parameter %s has no default: the seed's deploy command would fail", name)
		}
	}
	for _, name := range []string{
		"ManagedUserNames", "ManagedUserTag", "ManagedUserPath", "RotateEvery",
		"DeactivateAfter", "DeleteAfter", "SecretPrefix", "KmsKeyArn", "Architecture",
		"LogRetentionDays", "AlarmTopic",
	} {
		if _, ok := params[name]; !ok {
			t.Errorf("parameter %s missing", name)
		}
	}
	for name, want := range map[string]string{"RotateEvery": "5m", "DeactivateAfter": "2m", "DeleteAfter": "1m", "SecretPrefix": "iam-key-rotation/"} {
		if got := params[name].(map[string]any)["Default"]; got != want {
			t.Errorf("parameter %s: default %v, want the seed's %q", name, got, want)
		}
	}
}

// TestTemplateParameterPatterns checks that parameters spliced into ARNs
// cannot widen the role's scope with a wildcard, and accept real values.
func TestTemplateParameterPatterns(t *testing.T) {
	raw := readTemplate(t, templatePath)
	params := raw["Parameters"].(map[string]any)
	tests := []struct {
		param string
		value string
		ok    bool
	}{
		{"SenderEmail", "keys@example.com", true},
		{"SenderEmail", "*@example.com", false},
		{"SenderEmail", "*", false},
		{"AdminEmail", "first.last+ops@corp.example.co.uk", true},
		{"AdminEmail", "admin@*", false},
		{"ManagedUserPath", "/", true},
		{"ManagedUserPath", "/ci/deploy/", true},
		{"ManagedUserPath", "/*/", false},
		{"ManagedUserPath", "ci/", false},
		{"ManagedUserPath", "/ci", false},
		{"SecretPrefix", "iam-key-rotation/", true},
		{"SecretPrefix", "*", false},
		{"SecretPrefix", "keys/?", false},
		{"ExemptGroup", "", true},
		{"ExemptGroup", "break-glass", true},
		{"ExemptGroup", "*", false},
		{"RotateEvery", "90d", true},
		{"RotateEvery", "1h30m", true},
		{"RotateEvery", "5", false},
		{"KmsKeyArn", "", true},
		{"KmsKeyArn", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", true},
		{"KmsKeyArn", "arn:aws:kms:eu-west-1:123456789012:key/*", false},
		{"AlarmTopic", "", true},
		{"AlarmTopic", "arn:aws:sns:eu-west-1:123456789012:ops-alarms", true},
		{"AlarmTopic", "arn:aws:sns:eu-west-1:123456789012:*", false},
	}
	for _, tt := range tests {
		t.Run(tt.param+"="+tt.value, func(t *testing.T) {
			p := params[tt.param].(map[string]any)
			pattern, _ := p["AllowedPattern"].(string)
			if pattern == "" {
				t.Fatalf("parameter %s has no AllowedPattern", tt.param)
			}
			// CloudFormation matches AllowedPattern against the whole value.
			re := regexp.MustCompile("^(?:" + pattern + ")$")
			if got, want := re.MatchString(tt.value), tt.ok; got != want {
				t.Errorf("%s %q matches %q: %v, want %v", tt.param, tt.value, pattern, got, want)
			}
		})
	}
}

// TestTemplateRole checks both roles against least privilege: no wildcard
// action, no Resource "*" but the documented exceptions, IAM scoped to the
// managed users' path, Secrets Manager to the prefix (and the API keys
// secret), KMS through Secrets Manager, SES to the identities, logs to each
// function's own log group; the API's role reads and writes nothing.
func TestTemplateRole(t *testing.T) {
	raw := readTemplate(t, templatePath)
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) {
			tpl := resolve(t, raw, d.params)
			param := paramOf(raw, d.params)
			hostsAPI := param("ServeApi") == "true"

			// Nowhere in the template: an action with a wildcard, NotAction or NotResource.
			walk(tpl, func(key string, v any) {
				switch key {
				case "NotAction", "NotResource":
					t.Errorf("template uses %s", key)
				case "Action":
					for _, a := range strs(v) {
						if strings.ContainsAny(a, "*?") {
							t.Errorf("action %q has a wildcard", a)
						}
					}
				}
			})

			roles := map[string]string{"Role": "RolePolicy"}
			if hostsAPI {
				roles["ApiRole"] = "ApiRolePolicy"
			} else if got := resourceType(tpl, "ApiRole"); got != "" {
				t.Errorf("ServeApi false: ApiRole is still created")
			}
			granted := map[string][]string{}
			for role, policy := range roles {
				r := props(t, tpl, role)
				if got := r["Policies"]; got != nil {
					t.Errorf("%s has inline Policies %v; its permissions belong in %s", role, got, policy)
				}
				if got := r["ManagedPolicyArns"]; got != nil {
					t.Errorf("%s has managed policies %v", role, got)
				}
				if got := r["RoleName"]; got != nil {
					t.Errorf("%s has a fixed name %v: CAPABILITY_NAMED_IAM would be needed", role, got)
				}
				trust := r["AssumeRolePolicyDocument"].(map[string]any)["Statement"].([]any)
				if got, want := len(trust), 1; got != want {
					t.Fatalf("%s trust policy has %d statements, want %d", role, got, want)
				}
				if got, want := dig(trust[0].(map[string]any), "Principal", "Service"), "lambda.amazonaws.com"; got != want {
					t.Errorf("%s trust principal %v, want %v", role, got, want)
				}
				rp := props(t, tpl, policy)
				if got, want := rp["Roles"], []any{"ref:" + role}; !reflect.DeepEqual(got, want) {
					t.Errorf("%s.Roles = %v, want %v", policy, got, want)
				}
				granted[policy] = checkPolicy(t, policy, rp, param)
			}

			rotation := granted["RolePolicy"]
			if got, want := slices.Contains(rotation, "iam:ListUsers"), param("ManagedUserTag") != ""; got != want {
				t.Errorf("iam:ListUsers granted: %v, want %v (only to find users by tag)", got, want)
			}
			bulk := param("BulkObserve") == "true"
			for _, a := range []string{"iam:GetAccountAuthorizationDetails", "iam:GenerateCredentialReport", "iam:GetCredentialReport", "secretsmanager:ListSecrets"} {
				if got := slices.Contains(rotation, a); got != bulk {
					t.Errorf("%s granted to the rotation role: %v, want %v (only for BulkObserve)", a, got, bulk)
				}
			}
			if got, want := slices.Contains(rotation, "events:PutEvents"), param("EventBus") != ""; got != want {
				t.Errorf("events:PutEvents granted: %v, want %v (only with EventBus)", got, want)
			}
			if got, want := slices.Contains(rotation, "iam:GetGroup"), param("ExemptGroup") != ""; got != want {
				t.Errorf("iam:GetGroup granted: %v, want %v (only to read the exempt group)", got, want)
			}
			for _, a := range []string{"iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey", "secretsmanager:PutSecretValue", "ses:SendEmail"} {
				if !slices.Contains(rotation, a) {
					t.Errorf("the rotation role lacks %s, which the engine needs", a)
				}
			}
			if hostsAPI {
				for _, a := range []string{"secretsmanager:BatchGetSecretValue", "secretsmanager:ListSecrets", "secretsmanager:GetSecretValue", "kms:Decrypt"} {
					if !slices.Contains(granted["ApiRolePolicy"], a) {
						t.Errorf("the API role lacks %s, which reading the secrets needs", a)
					}
				}
			}
		})
	}
}

// checkPolicy checks one role policy's statements and returns the actions
// it grants.
func checkPolicy(t *testing.T, policy string, rp map[string]any, param func(string) string) []string {
	t.Helper()
	userARN := "arn:aws:iam::" + testAccount + ":user" + param("ManagedUserPath") + "*"
	secretARN := "arn:aws:secretsmanager:" + testRegion + ":" + testAccount + ":secret:" + param("SecretPrefix") + "*"
	var granted []string
	for _, s := range rp["PolicyDocument"].(map[string]any)["Statement"].([]any) {
		st := s.(map[string]any)
		sid, _ := st["Sid"].(string)
		if got, want := st["Effect"], "Allow"; got != want {
			t.Errorf("%s statement %s: Effect %v, want %v", policy, sid, got, want)
		}
		actions := strs(st["Action"])
		resources := strs(st["Resource"])
		granted = append(granted, actions...)
		for _, a := range actions {
			if !slices.Contains(policyActions[policy], a) {
				t.Errorf("%s statement %s grants %s, which its function does not call", policy, sid, a)
			}
		}
		if slices.Contains(resources, "*") {
			want, ok := starResourceExceptions[sid]
			if !ok || len(resources) != 1 || !slices.Equal(actions, want) {
				t.Errorf("%s statement %s: Resource \"*\" for %v: only %v may have it", policy, sid, actions, starResourceExceptions)
			}
			continue
		}
		for _, a := range actions {
			for _, r := range resources {
				if !scoped(policy, a, r, userARN, secretARN, param) {
					t.Errorf("%s statement %s: %s on %q is not scoped to the managed users, the prefix, the key, the identities or the log group", policy, sid, a, r)
				}
			}
		}
		if service, _, _ := strings.Cut(actions[0], ":"); service == "kms" {
			if got, want := dig(st, "Condition", "StringEquals", "kms:ViaService"), "secretsmanager."+testRegion+".amazonaws.com"; got != want {
				t.Errorf("%s statement %s: kms:ViaService = %v, want %v", policy, sid, got, want)
			}
			if got, want := dig(st, "Condition", "ArnLike", "kms:EncryptionContext:SecretARN"), secretARN; got != want {
				t.Errorf("%s statement %s: kms:EncryptionContext:SecretARN = %v, want %v", policy, sid, got, want)
			}
		}
	}
	return granted
}

// scoped reports whether resource r is a scoped resource for action a in policy.
func scoped(policy, a, r, userARN, secretARN string, param func(string) string) bool {
	service, _, _ := strings.Cut(a, ":")
	logGroup := map[string]string{"RolePolicy": "LogGroup", "ApiRolePolicy": "ApiLogGroup"}[policy]
	switch service {
	case "iam":
		return r == userARN ||
			r == "arn:aws:iam::"+testAccount+":group/"+param("ExemptGroup") ||
			r == "arn:aws:iam::"+testAccount+":group/*/"+param("ExemptGroup")
	case "secretsmanager":
		// The API reads its keys from the stack's secret, outside the prefix.
		return r == secretARN || (policy == "ApiRolePolicy" && a == "secretsmanager:GetSecretValue" && r == "ref:ApiKeysSecret")
	case "kms":
		if k := param("KmsKeyArn"); k != "" {
			return r == k
		}
		return r == "arn:aws:test:"+testRegion+":"+testAccount+":Key/Arn"
	case "ses":
		return r == "arn:aws:ses:"+testRegion+":"+testAccount+":identity/"+param("SenderEmail") ||
			r == "arn:aws:ses:"+testRegion+":"+testAccount+":identity/"+param("AdminEmail")
	case "logs":
		return r == "arn:aws:test:"+testRegion+":"+testAccount+":"+logGroup+"/Arn"
	case "events":
		return r == "arn:aws:events:"+testRegion+":"+testAccount+":event-bus/"+param("EventBus")
	}
	return false
}

// paramOf returns a deployment's parameter values, defaults included.
func paramOf(raw map[string]any, params map[string]string) func(string) string {
	return func(name string) string {
		if v, ok := params[name]; ok {
			return v
		}
		return fmt.Sprint(raw["Parameters"].(map[string]any)[name].(map[string]any)["Default"])
	}
}

// cryptoActions are the KMS actions that use a key rather than administer it.
var cryptoActions = []string{
	"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo",
	"kms:GenerateDataKeyWithoutPlaintext", "kms:GenerateDataKeyPair", "kms:GenerateDataKeyPairWithoutPlaintext",
	"kms:CreateGrant", "kms:Sign", "kms:Verify", "kms:GenerateMac", "kms:VerifyMac", "kms:DeriveSharedSecret",
}

// TestTemplateKeyPolicy checks the key policy: the account administers the
// key (no lockout) without using it; the rotation role, the API role and
// the managed users use it, each only through Secrets Manager for secrets
// under the prefix (a user only for its own); nobody else is named.
// Resource "*" there means the key itself (AWS requires it).
func TestTemplateKeyPolicy(t *testing.T) {
	raw := readTemplate(t, templatePath)
	for _, d := range []int{0, 2} { // with and without the API; deployment 1 brings its own key
		d := deployments[d]
		t.Run(d.name, func(t *testing.T) {
			tpl := resolve(t, raw, d.params)
			hostsAPI := paramOf(raw, d.params)("ServeApi") == "true"
			prefixARN := "arn:aws:secretsmanager:" + testRegion + ":" + testAccount + ":secret:iam-key-rotation/"
			root := "arn:aws:iam::" + testAccount + ":root"
			wantUse := map[string][]string{ // principal -> the crypto actions it may have
				"arn:aws:test:" + testRegion + ":" + testAccount + ":Role/Arn": {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"},
				"*": {"kms:Decrypt"},
			}
			if hostsAPI {
				wantUse["arn:aws:test:"+testRegion+":"+testAccount+":ApiRole/Arn"] = []string{"kms:Decrypt"}
			}
			seen := map[string]bool{}
			policy := props(t, tpl, "Key")["KeyPolicy"].(map[string]any)
			for _, s := range policy["Statement"].([]any) {
				st := s.(map[string]any)
				sid := st["Sid"]
				principal, _ := dig(st, "Principal", "AWS").(string)
				actions := strs(st["Action"])
				seen[principal] = true
				if got, want := st["Effect"], "Allow"; got != want {
					t.Errorf("key policy statement %v: Effect %v", sid, got)
				}
				if got, want := strs(st["Resource"]), []string{"*"}; !slices.Equal(got, want) {
					t.Errorf("key policy statement %v: Resource %v, want %v (the key itself)", sid, got, want)
				}
				uses := slices.DeleteFunc(slices.Clone(actions), func(a string) bool { return !slices.Contains(cryptoActions, a) })
				if principal == root {
					if len(uses) > 0 {
						t.Errorf("key policy statement %v: the account may use the key (%v): only the named principals may", sid, uses)
					}
					for _, a := range []string{"kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:DisableKey", "kms:EnableKey", "kms:DescribeKey"} {
						if !slices.Contains(actions, a) {
							t.Errorf("key policy statement %v: the account cannot %s: the key could be locked out", sid, a)
						}
					}
					continue
				}
				want, ok := wantUse[principal]
				if !ok {
					t.Errorf("key policy statement %v names %q, which may not use the key", sid, principal)
					continue
				}
				if !slices.Equal(actions, want) {
					t.Errorf("key policy statement %v: %s gets %v, want %v", sid, principal, actions, want)
				}
				if got, want := dig(st, "Condition", "StringEquals", "kms:ViaService"), "secretsmanager."+testRegion+".amazonaws.com"; got != want {
					t.Errorf("key policy statement %v: kms:ViaService = %v, want %v", sid, got, want)
				}
				context := strs(dig(st, "Condition", "ArnLike", "kms:EncryptionContext:SecretARN"))
				if principal != "*" {
					if !slices.Equal(context, []string{prefixARN + "*"}) {
						t.Errorf("key policy statement %v: SecretARN context = %v, want the prefix", sid, context)
					}
					continue
				}
				// The managed users: this account's users under the path, each
				// for its own secret and ring members only.
				if got, want := dig(st, "Condition", "StringEquals", "kms:CallerAccount"), testAccount; got != want {
					t.Errorf("key policy statement %v: open principal without kms:CallerAccount = %v", sid, got)
				}
				if got, want := dig(st, "Condition", "ArnLike", "aws:PrincipalArn"), "arn:aws:iam::"+testAccount+":user/*"; got != want {
					t.Errorf("key policy statement %v: aws:PrincipalArn = %v, want %v", sid, got, want)
				}
				if want := []string{prefixARN + "${aws:username}-??????", prefixARN + "${aws:username}/*"}; !slices.Equal(context, want) {
					t.Errorf("key policy statement %v: SecretARN context = %v, want each user's own secrets %v", sid, context, want)
				}
			}
			if !seen[root] {
				t.Error("the key policy does not let the account administer the key: it could be locked out")
			}
			for p := range wantUse {
				if !seen[p] {
					t.Errorf("the key policy does not let %s use the key", p)
				}
			}
		})
	}
}

// TestTemplateAPI checks the REST API's resources: the function, its URL
// and permissions, the API keys secret, and how the rotation function's
// emails learn the URL.
func TestTemplateAPI(t *testing.T) {
	raw := readTemplate(t, templatePath)
	seed := resolve(t, raw, deployments[0].params)
	for name, typ := range map[string]string{
		"ApiFunction":            "AWS::Lambda::Function",
		"ApiRole":                "AWS::IAM::Role",
		"ApiRolePolicy":          "AWS::IAM::Policy",
		"ApiFunctionUrl":         "AWS::Lambda::Url",
		"ApiUrlPermission":       "AWS::Lambda::Permission",
		"ApiUrlInvokePermission": "AWS::Lambda::Permission",
		"ApiKeysSecret":          "AWS::SecretsManager::Secret",
		"ApiLogGroup":            "AWS::Logs::LogGroup",
		"ApiErrorsAlarm":         "AWS::CloudWatch::Alarm",
	} {
		if got := resourceType(seed, name); got != typ {
			t.Errorf("resource %s: type %q, want %q", name, got, typ)
		}
	}
	fn := props(t, seed, "ApiFunction")
	env, _ := dig(fn, "Environment", "Variables").(map[string]any)
	checks := []struct {
		what      string
		got, want any
	}{
		{"ApiFunction.Runtime", fn["Runtime"], "provided.al2023"},
		{"ApiFunction.Handler", fn["Handler"], "bootstrap"},
		{"ApiFunction.Code (local path for aws cloudformation package)", fn["Code"], apiCodeZip},
		{"ApiFunction.Role", fn["Role"], "arn:aws:test:" + testRegion + ":" + testAccount + ":ApiRole/Arn"},
		{"ApiFunction.Architectures", fn["Architectures"], []any{"arm64"}},
		{"ApiFunction.LoggingConfig.LogGroup", dig(fn, "LoggingConfig", "LogGroup"), "ref:ApiLogGroup"},
		{"ApiFunction env KEYROT_API_KEYS_SECRET", env["KEYROT_API_KEYS_SECRET"], "ref:ApiKeysSecret"},
		{"ApiFunction env KEYROT_SECRET_PREFIX", env["KEYROT_SECRET_PREFIX"], "iam-key-rotation/"},
		{"ApiFunction env KEYROT_ROTATE_EVERY", env["KEYROT_ROTATE_EVERY"], "5m"},
		{"ApiFunctionUrl.AuthType", props(t, seed, "ApiFunctionUrl")["AuthType"], "NONE"},
		{"ApiFunctionUrl.TargetFunctionArn", props(t, seed, "ApiFunctionUrl")["TargetFunctionArn"], "arn:aws:test:" + testRegion + ":" + testAccount + ":ApiFunction/Arn"},
		{"ApiUrlPermission", props(t, seed, "ApiUrlPermission"), map[string]any{"FunctionName": "ref:ApiFunction", "Action": "lambda:InvokeFunctionUrl", "Principal": "*", "FunctionUrlAuthType": "NONE"}},
		{"ApiUrlInvokePermission", props(t, seed, "ApiUrlInvokePermission"), map[string]any{"FunctionName": "ref:ApiFunction", "Action": "lambda:InvokeFunction", "Principal": "*", "InvokedViaFunctionUrl": true}},
		{"ApiKeysSecret.SecretString (generated)", props(t, seed, "ApiKeysSecret")["SecretString"], nil},
		{"ApiKeysSecret.GenerateSecretString", props(t, seed, "ApiKeysSecret")["GenerateSecretString"], map[string]any{
			"SecretStringTemplate": `{"name":"default"}`, "GenerateStringKey": "key", "PasswordLength": float64(48), "ExcludePunctuation": true}},
		{"ApiKeysSecret.KmsKeyId (AWS managed key: administrators read it)", props(t, seed, "ApiKeysSecret")["KmsKeyId"], nil},
		{"the rotation function's emails quote the API", dig(props(t, seed, "Function"), "Environment", "Variables", "KEYROT_API_URL"), "https://ApiFunctionUrl.lambda-url." + testRegion + ".on.aws"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.what, c.got, c.want)
		}
	}
	for name := range env {
		if !slices.Contains(configEnv, name) {
			t.Errorf("ApiFunction sets %s, which keyrot's config does not read", name)
		}
	}
	// The keys secret must not be under the prefix, where the rotation
	// function writes and the API lists users.
	if name := props(t, seed, "ApiKeysSecret")["Name"].(string); strings.HasPrefix(name, "iam-key-rotation/") {
		t.Errorf("ApiKeysSecret %q is under the secret prefix", name)
	}

	// Hashes given as a parameter, and a custom URL for the emails.
	alt := resolve(t, raw, deployments[1].params)
	if got := props(t, alt, "ApiKeysSecret")["SecretString"]; got != apiKeysJSON {
		t.Errorf("ApiKeys given: SecretString = %#v, want the parameter", got)
	}
	if got := props(t, alt, "ApiKeysSecret")["GenerateSecretString"]; got != nil {
		t.Errorf("ApiKeys given: a key is still generated: %#v", got)
	}
	if got, want := dig(props(t, alt, "Function"), "Environment", "Variables", "KEYROT_API_URL"), "https://keyrot.example.com"; got != want {
		t.Errorf("ApiUrl given: KEYROT_API_URL = %#v, want %q", got, want)
	}

	// No API: none of its resources, and no API in the emails.
	off := resolve(t, raw, deployments[2].params)
	for name := range off["Resources"].(map[string]any) {
		if strings.HasPrefix(name, "Api") {
			t.Errorf("ServeApi false: resource %s is still created", name)
		}
	}
	if got := dig(props(t, off, "Function"), "Environment", "Variables", "KEYROT_API_URL"); got != "" {
		t.Errorf("ServeApi false: KEYROT_API_URL = %#v, want empty", got)
	}
}

// TestTemplateOutputs checks what the stack tells its deployer: the API's
// URL, how to read the generated API key, and how to fetch a key.
func TestTemplateOutputs(t *testing.T) {
	raw := readTemplate(t, templatePath)
	outputs := func(d int) map[string]any {
		tpl := resolve(t, raw, deployments[d].params)
		out := map[string]any{}
		for name, o := range tpl["Outputs"].(map[string]any) {
			out[name] = o.(map[string]any)["Value"]
		}
		return out
	}
	url := "https://ApiFunctionUrl.lambda-url." + testRegion + ".on.aws"
	seed := outputs(0)
	for name, want := range map[string]any{
		"ApiUrl":                  url,
		"ApiKeysSecretArn":        "ref:ApiKeysSecret",
		"ReadApiKeyCommand":       "aws secretsmanager get-secret-value --region " + testRegion + " --secret-id ref:ApiKeysSecret --query SecretString --output text | jq -r .key",
		"FetchCredentialsCommand": `curl -H "X-API-Key: $KEYROT_API_KEY" ` + url + "/credentials/USER",
		"ApiFunctionName":         "ref:ApiFunction",
		"FunctionName":            "ref:Function",
		"KmsKeyArn":               "arn:aws:test:" + testRegion + ":" + testAccount + ":Key/Arn",
		"SecretPrefix":            "iam-key-rotation/",
	} {
		if got := seed[name]; got != want {
			t.Errorf("output %s = %#v, want %#v", name, got, want)
		}
	}
	// Hashes given: no key in clear to read.
	if got, ok := outputs(1)["ReadApiKeyCommand"]; ok {
		t.Errorf("ApiKeys given: ReadApiKeyCommand = %#v, want none", got)
	}
	off := outputs(2)
	for _, name := range []string{"ApiUrl", "ApiKeysSecretArn", "ReadApiKeyCommand", "FetchCredentialsCommand"} {
		if got, ok := off[name]; ok {
			t.Errorf("ServeApi false: output %s = %#v, want none", name, got)
		}
	}
}

// TestRootTemplateCopy checks that key_rotation.yaml at the repository root
// (the seed's file name) is the template in deploy/, byte for byte:
// `make package` writes the packaged form to build/, never over it.
func TestRootTemplateCopy(t *testing.T) {
	src, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(rootCopyPath)
	if err != nil {
		t.Fatalf("the seed's file name must exist at the repository root: %v", err)
	}
	if !bytes.Equal(src, root) {
		t.Fatalf("%s differs from deploy/%s: cp deploy/%s %s", rootCopyPath, templatePath, templatePath, templatePath)
	}
}

// TestMakefileBuildsTheZip checks that the Makefile writes the zips where
// the template's Code points, and packages deploy/ into build/.
func TestMakefileBuildsTheZip(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"aws cloudformation package",
		"--template-file deploy/key_rotation.yaml",
		"--output-template-file build/key_rotation.yaml",
		"-tags lambda.norpc",
		"-trimpath",
		"-buildid=",
		"github.com/keyrot/keyrot/internal/buildinfo.version",
		"SHA256SUMS",
	} {
		if !bytes.Contains(mk, []byte(want)) {
			t.Errorf("Makefile does not contain %q", want)
		}
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	out, err := exec.Command("make", "-n", "-C", "..", "package", "BUCKET=my-artifacts").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n package: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--s3-bucket my-artifacts")) {
		t.Errorf("make package does not pass BUCKET to aws cloudformation package:\n%s", out)
	}
	// Whatever make package writes is under build/ (ignored), never a
	// tracked file such as either key_rotation.yaml.
	outputs := regexp.MustCompile(`--output-template-file[= ](\S+)`).FindAllSubmatch(out, -1)
	if len(outputs) == 0 {
		t.Errorf("make package writes no packaged template:\n%s", out)
	}
	for _, m := range outputs {
		if !strings.HasPrefix(string(m[1]), "build/") {
			t.Errorf("make package writes %s, outside build/:\n%s", m[1], out)
		}
	}
	for _, want := range []string{"./cmd/keyrot-lambda", "./cmd/keyrot-api-lambda", strings.TrimPrefix(codeZip, "../"), strings.TrimPrefix(apiCodeZip, "../")} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("make package does not build %s:\n%s", want, out)
		}
	}
}

// readTemplate reads a YAML template into its JSON form, with the short-form
// intrinsics (!Ref, !Sub, ...) in long form and nothing resolved.
func readTemplate(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var tpl map[string]any
	if err := json.Unmarshal(js, &tpl); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return tpl
}

// noValue stands for AWS::NoValue until it is dropped.
type noValue struct{}

// resolver evaluates a template the way CloudFormation does at deploy time:
// parameters take their values, conditions are decided, resources and
// outputs whose condition is false are dropped, and intrinsics are replaced
// by their values. A reference to a resource becomes "ref:<Name>" and an
// attribute "arn:aws:test:<region>:<account>:<Name>/<Attr>", strings of the
// type CloudFormation would put there (a function URL's FunctionUrl is
// "https://<Name>.lambda-url.<region>.on.aws/", as Lambda makes them).
type resolver struct {
	tpl        map[string]any
	params     map[string]any
	conditions map[string]bool
	resources  map[string]any
}

// resolve returns the template as CloudFormation would deploy it with params.
func resolve(t *testing.T, raw map[string]any, params map[string]string) map[string]any {
	t.Helper()
	// Work on a copy: raw is shared between subtests.
	js, _ := json.Marshal(raw)
	var tpl map[string]any
	if err := json.Unmarshal(js, &tpl); err != nil {
		t.Fatal(err)
	}
	r := &resolver{tpl: tpl, params: map[string]any{}, conditions: map[string]bool{}}
	r.resources, _ = tpl["Resources"].(map[string]any)
	declared, _ := tpl["Parameters"].(map[string]any)
	for name := range params {
		if _, ok := declared[name]; !ok {
			t.Fatalf("test passes parameter %s, which the template does not declare", name)
		}
	}
	for name, d := range declared {
		decl := d.(map[string]any)
		value, ok := params[name]
		if !ok {
			def, ok := decl["Default"]
			if !ok {
				t.Fatalf("parameter %s has no default and no value", name)
			}
			value = fmt.Sprint(def)
		}
		if err := checkParameter(decl, value); err != nil {
			t.Fatalf("parameter %s=%q: %v", name, value, err)
		}
		switch decl["Type"] {
		case "Number":
			// Ref gives a Number parameter as a string, which CloudFormation
			// converts for a numeric property: model the converted value.
			n, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("parameter %s=%q: not a number", name, value)
			}
			r.params[name] = n
		case "CommaDelimitedList":
			list := []any{}
			for _, s := range strings.Split(value, ",") {
				list = append(list, strings.TrimSpace(s))
			}
			r.params[name] = list
		default:
			r.params[name] = value
		}
	}
	conds, _ := tpl["Conditions"].(map[string]any)
	for name := range conds {
		if _, err := r.condition(name); err != nil {
			t.Fatalf("condition %s: %v", name, err)
		}
	}
	for _, section := range []string{"Resources", "Outputs"} {
		m, _ := tpl[section].(map[string]any)
		for name, v := range m {
			entry := v.(map[string]any)
			if c, ok := entry["Condition"].(string); ok {
				if !r.conditions[c] {
					delete(m, name)
					continue
				}
				delete(entry, "Condition")
			}
		}
	}
	for _, section := range []string{"Resources", "Outputs"} {
		out, err := r.eval(tpl[section])
		if err != nil {
			t.Fatalf("%s: %v", section, err)
		}
		tpl[section] = out
	}
	// The deployed template has no parameters or conditions left to decide.
	delete(tpl, "Conditions")
	return tpl
}

// checkParameter applies AllowedValues and AllowedPattern as CloudFormation does.
func checkParameter(decl map[string]any, value string) error {
	if allowed, ok := decl["AllowedValues"].([]any); ok {
		if !slices.ContainsFunc(allowed, func(a any) bool { return fmt.Sprint(a) == value }) {
			return fmt.Errorf("not one of %v", allowed)
		}
	}
	if p, ok := decl["AllowedPattern"].(string); ok {
		if !regexp.MustCompile("^(?:" + p + ")$").MatchString(value) {
			return fmt.Errorf("does not match %s", p)
		}
	}
	return nil
}

func (r *resolver) condition(name string) (bool, error) {
	if v, ok := r.conditions[name]; ok {
		return v, nil
	}
	expr, ok := r.tpl["Conditions"].(map[string]any)[name]
	if !ok {
		return false, fmt.Errorf("no condition %q", name)
	}
	v, err := r.eval(expr)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("condition %q is %T, not a boolean", name, v)
	}
	r.conditions[name] = b
	return b, nil
}

func (r *resolver) eval(v any) (any, error) {
	switch v := v.(type) {
	case []any:
		out := []any{}
		for _, e := range v {
			e, err := r.eval(e)
			if err != nil {
				return nil, err
			}
			if _, ok := e.(noValue); !ok {
				out = append(out, e)
			}
		}
		return out, nil
	case map[string]any:
		if len(v) == 1 {
			for k, arg := range v {
				if k == "Ref" || strings.HasPrefix(k, "Fn::") || (k == "Condition" && isString(arg)) {
					return r.intrinsic(k, arg)
				}
			}
		}
		out := map[string]any{}
		for k, e := range v {
			e, err := r.eval(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			if _, ok := e.(noValue); !ok {
				out[k] = e
			}
		}
		return out, nil
	}
	return v, nil
}

func isString(v any) bool { _, ok := v.(string); return ok }

func (r *resolver) intrinsic(fn string, arg any) (any, error) {
	switch fn {
	case "Ref":
		name, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("Ref of %T", arg)
		}
		return r.ref(name)
	case "Condition":
		return r.condition(arg.(string))
	case "Fn::GetAtt":
		var parts []string
		switch a := arg.(type) {
		case string:
			parts = strings.SplitN(a, ".", 2)
		case []any:
			parts = strs(a)
		}
		if len(parts) != 2 {
			return nil, fmt.Errorf("Fn::GetAtt %v", arg)
		}
		return r.getAtt(parts[0], parts[1])
	case "Fn::Sub":
		return r.sub(arg)
	case "Fn::If":
		// Only the branch taken is evaluated, as CloudFormation does.
		list, _ := arg.([]any)
		if len(list) != 3 {
			return nil, fmt.Errorf("Fn::If takes 3 arguments, got %v", arg)
		}
		name, _ := list[0].(string)
		c, err := r.condition(name)
		if err != nil {
			return nil, err
		}
		if c {
			return r.eval(list[1])
		}
		return r.eval(list[2])
	}
	// The rest take evaluated arguments.
	args, err := r.eval(arg)
	if err != nil {
		return nil, err
	}
	list, _ := args.([]any)
	if fn == "Fn::And" || fn == "Fn::Or" || fn == "Fn::Not" {
		// goformation's YAML reader turns "!Condition Name" into the bare
		// string "Name": in these functions a string names a condition.
		for i, e := range list {
			if name, ok := e.(string); ok {
				if list[i], err = r.condition(name); err != nil {
					return nil, err
				}
			}
		}
	}
	switch fn {
	case "Fn::Equals":
		if len(list) != 2 {
			return nil, fmt.Errorf("Fn::Equals takes 2 arguments, got %v", args)
		}
		return reflect.DeepEqual(list[0], list[1]), nil
	case "Fn::Not":
		if len(list) != 1 {
			return nil, fmt.Errorf("Fn::Not takes 1 argument, got %v", args)
		}
		b, ok := list[0].(bool)
		if !ok {
			return nil, fmt.Errorf("Fn::Not of %T", list[0])
		}
		return !b, nil
	case "Fn::And", "Fn::Or":
		result := fn == "Fn::And"
		for _, e := range list {
			b, ok := e.(bool)
			if !ok {
				return nil, fmt.Errorf("%s of %T", fn, e)
			}
			if fn == "Fn::And" {
				result = result && b
			} else {
				result = result || b
			}
		}
		return result, nil
	case "Fn::Join":
		if len(list) != 2 {
			return nil, fmt.Errorf("Fn::Join takes 2 arguments, got %v", args)
		}
		parts, ok := list[1].([]any)
		if !ok {
			return nil, fmt.Errorf("Fn::Join of %T", list[1])
		}
		return strings.Join(strs(parts), list[0].(string)), nil
	case "Fn::Split":
		if len(list) != 2 {
			return nil, fmt.Errorf("Fn::Split takes 2 arguments, got %v", args)
		}
		sep, ok1 := list[0].(string)
		str, ok2 := list[1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("Fn::Split of %T, %T", list[0], list[1])
		}
		var out []any
		for _, p := range strings.Split(str, sep) {
			out = append(out, p)
		}
		return out, nil
	case "Fn::Select":
		if len(list) != 2 {
			return nil, fmt.Errorf("Fn::Select takes 2 arguments, got %v", args)
		}
		i, err := strconv.Atoi(fmt.Sprint(list[0]))
		items, ok := list[1].([]any)
		if err != nil || !ok || i < 0 || i >= len(items) {
			// CloudFormation fails the deployment here.
			return nil, fmt.Errorf("Fn::Select %v of %v: out of range", list[0], list[1])
		}
		return items[i], nil
	}
	return nil, fmt.Errorf("intrinsic %s is not modelled by this test", fn)
}

func (r *resolver) ref(name string) (any, error) {
	switch name {
	case "AWS::AccountId":
		return testAccount, nil
	case "AWS::Region":
		return testRegion, nil
	case "AWS::Partition":
		return "aws", nil
	case "AWS::StackName":
		return testStack, nil
	case "AWS::NoValue":
		return noValue{}, nil
	}
	if v, ok := r.params[name]; ok {
		return v, nil
	}
	if _, ok := r.resources[name]; ok {
		return "ref:" + name, nil
	}
	return nil, fmt.Errorf("Ref to %q: no such parameter or (deployed) resource", name)
}

func (r *resolver) getAtt(name, attr string) (any, error) {
	if _, ok := r.resources[name]; !ok {
		return nil, fmt.Errorf("Fn::GetAtt of %q: no such (deployed) resource", name)
	}
	if attr == "FunctionUrl" {
		return "https://" + name + ".lambda-url." + testRegion + ".on.aws/", nil
	}
	return "arn:aws:test:" + testRegion + ":" + testAccount + ":" + name + "/" + attr, nil
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

func (r *resolver) sub(arg any) (any, error) {
	var (
		s    string
		vars = map[string]any{}
	)
	switch a := arg.(type) {
	case string:
		s = a
	case []any:
		if len(a) != 2 {
			return nil, fmt.Errorf("Fn::Sub %v", arg)
		}
		s, _ = a[0].(string)
		m, err := r.eval(a[1])
		if err != nil {
			return nil, err
		}
		vars, _ = m.(map[string]any)
	default:
		return nil, fmt.Errorf("Fn::Sub of %T", arg)
	}
	var failed error
	out := subVar.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}"
		}
		var v any
		var err error
		if x, ok := vars[name]; ok {
			v = x
		} else if res, attr, ok := strings.Cut(name, "."); ok {
			v, err = r.getAtt(res, attr)
		} else {
			v, err = r.ref(name)
		}
		str, ok := v.(string)
		if err == nil && !ok {
			err = fmt.Errorf("Fn::Sub of %s: %T is not a string", name, v)
		}
		if err != nil && failed == nil {
			failed = err
		}
		return str
	})
	return out, failed
}

// packageCode does what `aws cloudformation package` does to the functions:
// the local path in Code becomes the S3 location it uploaded the zip to.
func packageCode(t *testing.T, tpl map[string]any) {
	t.Helper()
	resources := tpl["Resources"].(map[string]any)
	for name, zip := range map[string]string{"Function": codeZip, "ApiFunction": apiCodeZip} {
		res, ok := resources[name].(map[string]any)
		if !ok {
			continue // not deployed
		}
		fn := res["Properties"].(map[string]any)
		if got := fn["Code"]; got != zip {
			t.Fatalf("%s.Code = %v, want the local path %s", name, got, zip)
		}
		fn["Code"] = map[string]any{"S3Bucket": "my-artifacts", "S3Key": "0123456789abcdef0123456789abcdef"}
	}
}

// validator validates templates and resources against goformation's
// CloudFormation JSON schema (draft 4).
type validator struct {
	compiler *jsonschema.Compiler
	root     *jsonschema.Schema
	cache    map[string]*jsonschema.Schema
	defs     map[string]any
}

const schemaURL = "mem://goformation/cloudformation.schema.json"

func newValidator(t *testing.T) *validator {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema.CloudformationSchema))
	if err != nil {
		t.Fatalf("goformation schema: %v", err)
	}
	m := doc.(map[string]any)
	// The schema's $id names the draft-4 meta-schema itself; give it its own.
	delete(m, "$id")
	m["$schema"] = "http://json-schema.org/draft-04/schema#"
	// goformation's schema predates InvokedViaFunctionUrl (October 2025),
	// which a public function URL's lambda:InvokeFunction permission needs;
	// cfn-lint's schema has it.
	perm := m["definitions"].(map[string]any)["AWS::Lambda::Permission"].(map[string]any)
	perm["properties"].(map[string]any)["Properties"].(map[string]any)["properties"].(map[string]any)["InvokedViaFunctionUrl"] = map[string]any{"type": "boolean"}
	// The whole template is checked here, but each resource against its own
	// type below: the root's anyOf over 1,400 types gives no useful error.
	m["properties"].(map[string]any)["Resources"] = map[string]any{
		"type":                 "object",
		"minProperties":        1,
		"additionalProperties": false,
		"patternProperties":    map[string]any{"^[a-zA-Z0-9]+$": map[string]any{"type": "object"}},
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft4)
	if err := c.AddResource(schemaURL, doc); err != nil {
		t.Fatal(err)
	}
	root, err := c.Compile(schemaURL)
	if err != nil {
		t.Fatalf("compile CloudFormation schema: %v", err)
	}
	return &validator{compiler: c, root: root, cache: map[string]*jsonschema.Schema{}, defs: m["definitions"].(map[string]any)}
}

// resource returns the schema of a resource type.
func (v *validator) resource(t *testing.T, typ string) *jsonschema.Schema {
	t.Helper()
	if s, ok := v.cache[typ]; ok {
		return s
	}
	if _, ok := v.defs[typ]; !ok {
		t.Fatalf("resource type %q is not in CloudFormation's schema", typ)
	}
	s, err := v.compiler.Compile(schemaURL + "#/definitions/" + typ)
	if err != nil {
		t.Fatalf("compile schema of %s: %v", typ, err)
	}
	v.cache[typ] = s
	return s
}

// walk calls f with every key and value in v, depth first.
func walk(v any, f func(key string, v any)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			f(k, e)
			walk(e, f)
		}
	case []any:
		for _, e := range v {
			walk(e, f)
		}
	}
}

// strs returns a string or list of strings as a slice.
func strs(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

// dig follows keys into nested maps; nil if a key is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func props(t *testing.T, tpl map[string]any, name string) map[string]any {
	t.Helper()
	p, ok := dig(tpl, "Resources", name, "Properties").(map[string]any)
	if !ok {
		t.Fatalf("resource %s has no properties", name)
	}
	return p
}

func resourceType(tpl map[string]any, name string) string {
	s, _ := dig(tpl, "Resources", name, "Type").(string)
	return s
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
