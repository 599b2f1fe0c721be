// Package email tells people about key events by email: it renders each
// keyrot.Event into a multipart (text and HTML) message from templates and
// delivers it through a Sender (package ses, package smtp, or LogSender)
// from a queue with rate limiting, retries and digests. A failed or slow delivery never blocks or fails a rotation.
//
// # Messages
//
// Each message carries the event details (user, access key id, time in UTC
// as RFC 3339, what happened, what keyrot does next and when, what the
// reader should do), how to fetch the current key (a curl line against the
// REST API with the API key taken from $KEYROT_API_KEY, the
// credential_process line for ~/.aws/config, and the direct Secrets Manager
// read), and security best practices. It never carries a secret access key:
// events do not hold one, and free-text fields are scrubbed of anything
// shaped like one before rendering.
//
// Subjects are made to be filtered on:
//
//	[keyrot] key created: <user> <key id>
//	[keyrot] key deactivated: <user> <key id>
//	[keyrot] key deleted: <user> <key id>
//	[keyrot] FAILED rotation: <user> [<key id>]
//	[keyrot] WARNING key in use: <user> <key id>     (also: unmanaged key, key limit,
//	                                                 user deleted, secret stale,
//	                                                 current key inactive, orphan key deleted)
//	[keyrot] digest: <n> events for <m> users (<k> FAILED, <j> WARNING)
//
// and every message has the headers X-Keyrot-Event (the event kind or
// "digest"), X-Keyrot-User, X-Keyrot-Key-Id and X-Keyrot-Warning where they
// apply, and Auto-Submitted: auto-generated.
//
// The templates are embedded; a file named like a built-in in the
// notify.templates directory replaces it: common.txt.tmpl and
// common.html.tmpl (the "fetch", "practices" and "footer" blocks, and
// "head" for HTML), event.txt.tmpl and event.html.tmpl (data: EventData),
// digest.txt.tmpl and digest.html.tmpl (data: DigestData). Text templates
// use text/template and HTML ones html/template, so values are escaped.
//
// # Recipients
//
// Each event goes to the admin address and to the user's owner. The owner
// is read from the IAM user's tag keyrot:owner (the rotator puts it in
// Event.Owner); several owners are separated by spaces, since IAM tag values
// cannot hold commas. Which kinds go to whom is configurable per kind with
// the entries "admin", "owner" or literal addresses; a kind the map does not
// list keeps the default (admin and owner), and only an explicit empty list
// silences a kind (Config.Unreached names those, for keyrot validate).
//
// # Configuration
//
// The keys of the notify section of the keyrot config file, and the
// environment variables that hold credentials (never the file):
//
//	notify.via            ses (default) | smtp | log
//	notify.sender         From address; with SES a verified identity     Config.From
//	notify.admin          administrators' address                        Config.Admin
//	notify.recipients     kind -> [admin|owner|address...]; kinds:       Config.Recipients
//	                      key_created key_deactivated key_deleted
//	                      rotation_failed warning (default: admin+owner)
//	notify.api_url        REST API base URL for the fetch lines          Config.APIBaseURL
//	notify.contact        whom to report a leaked key to (default admin) Config.Contact
//	notify.templates      directory of template overrides                Config.TemplateDir
//	notify.send_rate      messages per second (default 1)                Config.SendRate
//	notify.digest         fold each recipient's events in this window    Config.Digest
//	                      into one email (default 0: off)
//	notify.retries        retries after a failed send (default 5)        Config.Retries
//	notify.backoff        first retry delay, doubled per retry (2s)      Config.Backoff
//	notify.queue_size     events waiting for delivery (default 1000)     Config.QueueSize
//	notify.smtp.addr      host:port of the SMTP server                   smtp.Config.Addr
//	notify.smtp.tls       starttls (default) | tls | none                smtp.Config.TLS
//	KEYROT_SMTP_USERNAME  SMTP AUTH user name                            smtp.Config.Username
//	KEYROT_SMTP_PASSWORD  SMTP AUTH password                             smtp.Config.Password
//
// SecretPrefix and Region come from the secrets section of the config.
//
// # Delivery
//
// Notify queues the event and returns. One goroutine sends the messages at
// most notify.send_rate per second (SES accounts have a sending rate; the
// SES sandbox allows one message per second). A failed send is retried with
// exponential backoff unless the sender marked the error Permanent; after
// the last retry it is logged and reported to the result hook, where the
// caller counts it. If the queue is full the event is dropped, logged and
// reported. With a digest window, the events for one recipient within the
// window are folded into one email (a window holding one event gives the
// ordinary email), so a fleet of thousands of users does not flood inboxes.
//
// The notifier sends every event it is given. Whether a standing warning is
// sent again is decided before it gets here, by the record the rotator
// keeps on the user's secret (keyrot.WarnRecord: the same kind about the
// same key within notify.quiet_period is not re-sent), so a restart or a
// new Lambda environment does not send it again.
package email
