// Package natsauth owns the embedded NATS server's one user and password
// and the file in the agent's data dir that holds them (0600), read by the
// agent, the embedded server and `cellctl routes`. It is a leaf so the CLI
// can read the credential without linking the server.
package natsauth
