// Package notify delivers keyrot's events to channels beyond email: signed
// webhooks (package webhook), Slack (package slack) and Amazon EventBridge
// (package eventbridge). Each configured target gets its own Queue: a
// keyrot.Notifier that only queues (bounded), with one goroutine that
// delivers, retries with backoff and reports every outcome. So a slow or
// failing target never holds up the engine, email, or another target.
//
// Every channel sends the same Payload: what happened, to whom, which key
// id, when, and what comes next. It never carries a secret; an access key
// id is not one.
package notify
