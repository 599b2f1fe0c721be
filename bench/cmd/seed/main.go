// Command seed creates IAM users on a local AWS endpoint (the keyrot
// sandbox) for bench/api.sh. It reads the endpoint and credentials from the
// usual AWS environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) and
// refuses to run without AWS_ENDPOINT_URL, so it never touches a real
// account.
//
//	seed -n 50 -prefix bench-user-
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 50, "users to create")
	prefix := flag.String("prefix", "bench-user-", "user name prefix; users are PREFIX0 .. PREFIX(n-1)")
	flag.Parse()
	if os.Getenv("AWS_ENDPOINT_URL") == "" {
		return errors.New("set AWS_ENDPOINT_URL to the sandbox (this program is not for a real account)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("load AWS config: %w", err)
	}
	client := iam.NewFromConfig(cfg)
	for i := range *n {
		name := fmt.Sprintf("%s%d", *prefix, i)
		_, err := client.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)})
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode() == "EntityAlreadyExists" {
			continue
		}
		if err != nil {
			return fmt.Errorf("create user %q: %w", name, err)
		}
	}
	return nil
}
