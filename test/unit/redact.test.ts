/**
 * lib/redact.ts: URLs redacted from their parsed fields, with passwords that also spell other
 * parts of the message (a scheme, a user, a file name, a port), which substring replacement
 * garbled.
 */
import * as assert from "assert/strict";
import { redactMessage, redactUrl } from "../../lib/redact";

describe("redaction (lib/redact.ts)", () => {
  it("redacts the password field of a URL and nothing else, whatever the password spells", () => {
    assert.equal(
      redactUrl("postgres://postgres:postgres@127.0.0.1:5432/postgres"),
      "postgres://postgres:***@127.0.0.1:5432/postgres",
    );
    assert.equal(
      redactUrl("postgres://tautulli:tautulli@db.example:5439/tautulli"),
      "postgres://tautulli:***@db.example:5439/tautulli",
    );
    assert.equal(
      redactUrl("postgresql://plex:5439@10.0.0.5:5439/tautulli?sslmode=require"),
      "postgresql://plex:***@10.0.0.5:5439/tautulli?sslmode=require",
    );
    // %-encoded characters stay as they were; nothing of the password remains.
    const encoded = redactUrl("postgres://tautulli:s%2Fcr%40t@h:5432/d");
    assert.equal(encoded, "postgres://tautulli:***@h:5432/d");
    assert.equal(redactUrl("postgres://u@h/d"), "postgres://u@h/d", "no password: unchanged");
  });

  it("redacts password-like query parameters (libpq reads ?password=)", () => {
    assert.equal(
      redactUrl("postgres://u@h:5432/d?password=5439&sslmode=require&sslpassword=x"),
      "postgres://u@h:5432/d?password=***&sslmode=require&sslpassword=***",
    );
  });

  it("says so for a value that is not a URL, instead of echoing it", () => {
    assert.equal(redactUrl("not a url:secret"), "<unparseable URL>");
  });

  it("redactMessage replaces only the URL where a message quotes it whole", () => {
    const url = "postgres://postgres:postgres@127.0.0.1:5439/postgres";
    const message = `connect ECONNREFUSED 127.0.0.1:5439 (${url}); data dir /tmp/postgres/tautulli.db`;
    assert.equal(
      redactMessage(message, [url]),
      "connect ECONNREFUSED 127.0.0.1:5439 (postgres://postgres:***@127.0.0.1:5439/postgres); data dir /tmp/postgres/tautulli.db",
    );
    const tautulli = "postgres://tautulli:tautulli@h:5432/tautulli";
    assert.equal(
      redactMessage(`password authentication failed for user "tautulli" (/tmp/tautulli.db)`, [
        tautulli,
      ]),
      `password authentication failed for user "tautulli" (/tmp/tautulli.db)`,
      "free text is never searched for the password",
    );
    // The parser's spelling of the URL is found too (here: the trailing slash it adds).
    assert.equal(
      redactMessage("failed: http://u:secret@h:8080/", ["http://u:secret@h:8080"]),
      "failed: http://u:***@h:8080/",
    );
    assert.equal(redactMessage("text", [undefined, ""]), "text");
  });
});
