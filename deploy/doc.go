// Package deploy holds keyrot's CloudFormation template, key_rotation.yaml,
// which deploys the rotation engine as an AWS Lambda function (see
// README.md beside it). The package has no code: its tests validate the
// template against CloudFormation's resource schema and check that the
// function's role grants only what the engine uses.
package deploy
