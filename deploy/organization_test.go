package deploy

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/internal/config"
)

const (
	organizationPath = "organization.yaml"
	memberPath       = "member.yaml"
	workerRoleARN    = "arn:aws:iam::123456789012:role/keyrot-org-WorkerRole-ABC"
)

// orgDeployments are the parameter sets of the management stack.
var orgDeployments = []struct {
	name   string
	params map[string]string
}{
	{"whole organization", map[string]string{"SenderEmail": "keys@example.com", "AdminEmail": "admin@example.com"}},
	{"some OUs, one excluded", map[string]string{"SenderEmail": "keys@example.com", "AdminEmail": "admin@example.com",
		"OrganizationalUnits": "ou-ab12-prod0001,ou-ab12-dev00001", "ExcludeAccounts": "100000000003", "ExternalId": "keyrot-ext-7",
		"WorkerConcurrency": "20", "WorkerBatchSize": "10", "AlarmTopic": "arn:aws:sns:eu-west-1:123456789012:ops-alarms", "CreateSenderIdentity": "false"}},
	{"named accounts", map[string]string{"SenderEmail": "keys@example.com", "AdminEmail": "admin@example.com",
		"AccountIds": "100000000001,100000000002", "ManagedUserTag": "", "ManagedUserNames": "ci-bot"}},
}

// memberDeployments are the parameter sets of the member stack.
var memberDeployments = []struct {
	name   string
	params map[string]string
}{
	{"no external id", map[string]string{"WorkerRoleArn": workerRoleARN}},
	{"external id, by name, a path", map[string]string{"WorkerRoleArn": workerRoleARN, "ExternalId": "keyrot-ext-7",
		"ManagedUserTag": "", "ManagedUserPath": "/ci/", "SecretPrefix": "ci/keys/"}},
}

// orgFunctions are the management stack's functions, packaged alike.
var orgFunctions = []string{"Scheduler", "Worker"}

// TestOrgTemplatesSchema resolves both stacks for each deployment and
// validates them, and every resource, against CloudFormation's schema.
func TestOrgTemplatesSchema(t *testing.T) {
	v := newValidator(t)
	check := func(t *testing.T, tpl map[string]any) {
		resources := tpl["Resources"].(map[string]any)
		for _, fn := range orgFunctions {
			if res, ok := resources[fn].(map[string]any); ok {
				p := res["Properties"].(map[string]any)
				if got := p["Code"]; got != codeZip {
					t.Fatalf("%s.Code = %v, want the local path %s", fn, got, codeZip)
				}
				p["Code"] = map[string]any{"S3Bucket": "my-artifacts", "S3Key": "0123456789abcdef0123456789abcdef"}
			}
		}
		if err := v.root.Validate(tpl); err != nil {
			t.Fatalf("template fails the CloudFormation schema: %v", err)
		}
		for _, name := range sortedKeys(resources) {
			res := resources[name].(map[string]any)
			typ, _ := res["Type"].(string)
			if err := v.resource(t, typ).Validate(res); err != nil {
				t.Errorf("resource %s (%s) fails its schema: %v", name, typ, err)
			}
		}
	}
	raw := readTemplate(t, organizationPath)
	for _, d := range orgDeployments {
		t.Run("organization/"+d.name, func(t *testing.T) { check(t, resolve(t, raw, d.params)) })
	}
	member := readTemplate(t, memberPath)
	for _, d := range memberDeployments {
		t.Run("member/"+d.name, func(t *testing.T) { check(t, resolve(t, member, d.params)) })
	}
}

// policyOf returns a policy resource's statements by Sid.
func policyOf(t *testing.T, tpl map[string]any, name string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, s := range props(t, tpl, name)["PolicyDocument"].(map[string]any)["Statement"].([]any) {
		st := s.(map[string]any)
		if st["Effect"] != "Allow" {
			t.Errorf("%s: statement %v is not an Allow", name, st["Sid"])
		}
		out[st["Sid"].(string)] = st
	}
	return out
}

// noWildcardActions fails on an action with a wildcard, NotAction or NotResource.
func noWildcardActions(t *testing.T, tpl map[string]any) {
	t.Helper()
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
}

func TestOrganizationStack(t *testing.T) {
	raw := readTemplate(t, organizationPath)
	known := append(config.EnvNames(), "KEYROT_QUEUE_URL")
	for _, d := range orgDeployments {
		t.Run(d.name, func(t *testing.T) {
			tpl := resolve(t, raw, d.params)
			param := paramOf(raw, d.params)
			noWildcardActions(t, tpl)

			// The queue: FIFO, a dead-letter queue after three receives.
			q := props(t, tpl, "Queue")
			if q["FifoQueue"] != true || props(t, tpl, "DeadLetterQueue")["FifoQueue"] != true {
				t.Error("the queue and its dead-letter queue must be FIFO (one message group per account)")
			}
			if got, want := dig(q, "RedrivePolicy", "deadLetterTargetArn"), "arn:aws:test:"+testRegion+":"+testAccount+":DeadLetterQueue/Arn"; got != want {
				t.Errorf("redrive target %v, want %v", got, want)
			}
			if got := dig(q, "RedrivePolicy", "maxReceiveCount"); got != float64(3) {
				t.Errorf("maxReceiveCount %v, want 3", got)
			}
			if vt, _ := q["VisibilityTimeout"].(float64); vt < 6*300 {
				t.Errorf("VisibilityTimeout %v, want at least six times the longest worker timeout (300 s)", vt)
			}

			// The worker's event source: partial batch responses, bounded concurrency.
			esm := props(t, tpl, "WorkerEventSource")
			if got, want := esm["FunctionResponseTypes"], []any{"ReportBatchItemFailures"}; !reflect.DeepEqual(got, want) {
				t.Errorf("FunctionResponseTypes %v, want %v", got, want)
			}
			if got, want := dig(esm, "ScalingConfig", "MaximumConcurrency"), param("WorkerConcurrency"); got != parseNum(t, want) {
				t.Errorf("MaximumConcurrency %v, want the parameter's %v", got, want)
			}
			if esm["EventSourceArn"] != "arn:aws:test:"+testRegion+":"+testAccount+":Queue/Arn" || esm["FunctionName"] != "ref:Worker" {
				t.Errorf("event source %v -> %v, want the queue to the worker", esm["EventSourceArn"], esm["FunctionName"])
			}

			// The scheduler lists the organization and sends to the queue, nothing more.
			sched := policyOf(t, tpl, "SchedulerPolicy")
			wantSched := map[string][]string{
				"ListOrganizationAccounts": {"organizations:ListAccounts", "organizations:ListAccountsForParent", "organizations:ListChildren"},
				"QueueAccounts":            {"sqs:SendMessage"},
				"WriteOwnLogs":             {"logs:CreateLogStream", "logs:PutLogEvents"},
			}
			for sid, st := range sched {
				if !slices.Equal(strs(st["Action"]), wantSched[sid]) {
					t.Errorf("scheduler statement %s grants %v, want %v", sid, strs(st["Action"]), wantSched[sid])
				}
			}
			if got := strs(sched["QueueAccounts"]["Resource"]); !slices.Equal(got, []string{"arn:aws:test:" + testRegion + ":" + testAccount + ":Queue/Arn"}) {
				t.Errorf("scheduler sends to %v, want the queue alone", got)
			}

			// The worker assumes the member role, takes messages and mails; it
			// touches no IAM user or secret of its own account.
			worker := policyOf(t, tpl, "WorkerPolicy")
			if got, want := strs(worker["AssumeMemberRoles"]["Resource"]), []string{"arn:aws:iam::*:role/" + param("MemberRoleName")}; !slices.Equal(got, want) {
				t.Errorf("worker may assume %v, want %v only", got, want)
			}
			for sid, st := range worker {
				for _, a := range strs(st["Action"]) {
					service, _, _ := strings.Cut(a, ":")
					if !slices.Contains([]string{"sts", "sqs", "ses", "logs"}, service) {
						t.Errorf("worker statement %s grants %s: its work in an account goes through the member role", sid, a)
					}
					if strs(st["Resource"])[0] == "*" {
						t.Errorf("worker statement %s grants %s on *", sid, a)
					}
				}
			}

			// Both functions read only variables keyrot's config knows.
			for _, fn := range orgFunctions {
				vars := dig(props(t, tpl, fn), "Environment", "Variables").(map[string]any)
				for name := range vars {
					if strings.HasPrefix(name, "KEYROT_") && !slices.Contains(known, name) {
						t.Errorf("%s sets %s, which keyrot does not read", fn, name)
					}
				}
				org, ids := vars["KEYROT_ACCOUNTS_ORGANIZATION"], vars["KEYROT_ACCOUNTS_IDS"]
				if param("AccountIds") == "" && (org != "true" || ids != "") {
					t.Errorf("%s: without AccountIds, organization=%v ids=%v; want the whole organization", fn, org, ids)
				}
				if param("AccountIds") != "" && (org != "" || ids != param("AccountIds")) {
					t.Errorf("%s: with AccountIds, organization=%v ids=%v; want the ids", fn, org, ids)
				}
			}
			if got := dig(props(t, tpl, "Scheduler"), "Environment", "Variables", "KEYROT_QUEUE_URL"); got != "ref:Queue" {
				t.Errorf("scheduler's queue %v, want the stack's", got)
			}
			if got := dig(props(t, tpl, "Worker"), "Environment", "Variables", "KEYROT_KMS_KEY_ID"); got != param("KmsAliasName") {
				t.Errorf("worker's KMS key %v, want the alias each member resolves to its own key", got)
			}
			for _, out := range []string{"WorkerRoleArn", "QueueUrl", "DeadLetterQueueUrl"} {
				if dig(tpl, "Outputs", out) == nil {
					t.Errorf("output %s missing", out)
				}
			}
		})
	}
}

func parseNum(t *testing.T, s string) float64 {
	t.Helper()
	var f float64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("%q is not a whole number", s)
		}
		f = f*10 + float64(c-'0')
	}
	return f
}

func TestMemberStack(t *testing.T) {
	raw := readTemplate(t, memberPath)
	for _, d := range memberDeployments {
		t.Run(d.name, func(t *testing.T) {
			tpl := resolve(t, raw, d.params)
			param := paramOf(raw, d.params)
			noWildcardActions(t, tpl)

			role := props(t, tpl, "Role")
			if got, want := role["RoleName"], param("RoleName"); got != want {
				t.Errorf("RoleName %v, want %v", got, want)
			}
			trust := role["AssumeRolePolicyDocument"].(map[string]any)["Statement"].([]any)
			if len(trust) != 1 {
				t.Fatalf("trust policy has %d statements, want 1", len(trust))
			}
			st := trust[0].(map[string]any)
			if got := dig(st, "Principal", "AWS"); got != workerRoleARN {
				t.Errorf("trusted principal %v, want the worker role %s only", got, workerRoleARN)
			}
			ext := dig(st, "Condition", "StringEquals", "sts:ExternalId")
			if id := param("ExternalId"); id != "" && ext != id {
				t.Errorf("sts:ExternalId condition %v, want %q", ext, id)
			} else if id == "" && st["Condition"] != nil {
				t.Errorf("condition %v without an ExternalId", st["Condition"])
			}

			// The single-account role's permissions for keys and secrets, in this account only.
			userARN := "arn:aws:iam::" + testAccount + ":user" + param("ManagedUserPath") + "*"
			secretARN := "arn:aws:secretsmanager:" + testRegion + ":" + testAccount + ":secret:" + param("SecretPrefix") + "*"
			keyARN := "arn:aws:test:" + testRegion + ":" + testAccount + ":Key/Arn"
			var granted []string
			for sid, st := range policyOf(t, tpl, "RolePolicy") {
				for _, a := range strs(st["Action"]) {
					granted = append(granted, a)
					if !slices.Contains(roleActions, a) {
						t.Errorf("statement %s grants %s, which keyrot does not call", sid, a)
					}
					service, _, _ := strings.Cut(a, ":")
					for _, r := range strs(st["Resource"]) {
						ok := map[string]bool{"iam": r == userARN || (a == "iam:ListUsers" && r == "*"), "secretsmanager": r == secretARN, "kms": r == keyARN}[service]
						if !ok {
							t.Errorf("statement %s: %s on %q is not scoped to this account's managed users, secrets or key", sid, a, r)
						}
					}
				}
			}
			for _, a := range []string{"iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey", "secretsmanager:PutSecretValue", "kms:GenerateDataKey"} {
				if !slices.Contains(granted, a) {
					t.Errorf("the member role lacks %s", a)
				}
			}
			if got, want := slices.Contains(granted, "iam:ListUsers"), param("ManagedUserTag") != ""; got != want {
				t.Errorf("iam:ListUsers granted %v, want %v", got, want)
			}
			for _, a := range granted {
				if strings.HasPrefix(a, "ses:") || strings.HasPrefix(a, "sts:") {
					t.Errorf("the member role grants %s: mail goes from the management account", a)
				}
			}

			// Its own key, used by the role only through Secrets Manager.
			var roleUses bool
			for _, s := range dig(props(t, tpl, "Key"), "KeyPolicy", "Statement").([]any) {
				st := s.(map[string]any)
				if dig(st, "Principal", "AWS") == "arn:aws:test:"+testRegion+":"+testAccount+":Role/Arn" {
					roleUses = dig(st, "Condition", "StringEquals", "kms:ViaService") == "secretsmanager."+testRegion+".amazonaws.com"
				}
			}
			if !roleUses {
				t.Error("the key policy does not let the member role use the key through Secrets Manager")
			}
			if got := props(t, tpl, "KeyAlias")["AliasName"]; got != param("KmsAliasName") {
				t.Errorf("alias %v, want %v (what the worker names)", got, param("KmsAliasName"))
			}
		})
	}
}
