/**
 * The import's normalisation rules (lib/import/normalize.ts) value by value, the COPY text
 * escaping, redaction, and that docs/import.md documents exactly the rules the code applies.
 * (The text forms are checked against a real PostgreSQL in test/integration/import-text-forms.)
 */
import * as assert from "assert/strict";
import * as fs from "fs";
import * as path from "path";
import {
  NormalizeContext,
  normalizerFor,
  parseIsoMicros,
  RULES,
  SqliteValue,
  TargetKind,
  UnconvertibleValue,
} from "../../lib/import/normalize";
import { DBCHECK_RULES } from "../../lib/import/dbcheck";
import { copyEscape, copyEncoderFor, recordField } from "../../lib/import/pg-text";
import { describeValue, isSecretColumn } from "../../lib/redact";

/** A context that records the rules applied; `exact` and `raw` stand in for the re-reads. */
function context(exact?: SqliteValue, raw?: Buffer): NormalizeContext & { rules: string[] } {
  const rules: string[] = [];
  return {
    rules,
    note: (rule: number) => rules.push(RULES[rule].id),
    rawBytes: () => raw ?? null,
    exactValue: () => (exact === undefined ? assert.fail("exactValue() was not expected") : exact),
  };
}

function normalize(
  kind: TargetKind,
  value: SqliteValue,
  options: { exact?: SqliteValue; raw?: Buffer; maxLength?: number } = {},
) {
  const ctx = context(options.exact, options.raw);
  const result = normalizerFor(kind, options.maxLength ?? null)(value, ctx);
  return { result, rules: ctx.rules };
}

function rejects(kind: TargetKind, value: SqliteValue, pattern: RegExp, exact?: SqliteValue) {
  assert.throws(
    () => normalize(kind, value, { exact }),
    (error: unknown) => {
      assert.ok(error instanceof UnconvertibleValue);
      assert.match(error.reason, pattern);
      return true;
    },
  );
}

describe("import normalisation rules (lib/import/normalize.ts)", () => {
  describe("integer columns", () => {
    it("keeps integers, exactly beyond 2^53 (read again as BigInt)", () => {
      assert.deepEqual(normalize("bigint", 42), { result: 42, rules: [] });
      assert.deepEqual(normalize("bigint", -7), { result: -7, rules: [] });
      assert.deepEqual(normalize("bigint", 9007199254740992, { exact: 9007199254740993n }), {
        result: 9007199254740993n,
        rules: [],
      });
      assert.deepEqual(normalize("bigint", 9223372036854775807n), {
        result: 9223372036854775807n,
        rules: [],
      });
    });

    it("'' and whitespace become NULL; Python's None and friends too", () => {
      for (const blank of ["", " ", "\t\n"]) {
        assert.deepEqual(normalize("bigint", blank), {
          result: null,
          rules: ["integer.blank-text-to-null"],
        });
      }
      for (const word of ["None", "null", "NULL", " nan ", "undefined", "N/A", "nil"]) {
        assert.deepEqual(normalize("integer", word), {
          result: null,
          rules: ["integer.null-word-to-null"],
        });
      }
    });

    it("numeric text and REALs", () => {
      assert.deepEqual(normalize("bigint", " +42 "), { result: 42n, rules: ["integer.from-text"] });
      assert.deepEqual(normalize("bigint", "12.0"), {
        result: 12n,
        rules: ["integer.from-integral-real"],
      });
      assert.deepEqual(normalize("bigint", 12.5), { result: 13n, rules: ["integer.rounded-real"] });
      assert.deepEqual(normalize("bigint", -2.5), { result: -3n, rules: ["integer.rounded-real"] });
      assert.deepEqual(normalize("bigint", 0.49999999999999994), {
        result: 0n,
        rules: ["integer.rounded-real"],
      });
      assert.deepEqual(normalize("bigint", "1.5e1"), {
        result: 15n,
        rules: ["integer.from-integral-real"],
      });
      // An integral REAL beyond 2^53 (read again: still a REAL) is converted and counted.
      assert.deepEqual(normalize("bigint", 1e18, { exact: 1e18 }), {
        result: 1000000000000000000n,
        rules: ["integer.from-integral-real"],
      });
    });

    it("fails on junk, BLOBs, infinities and values out of the column's range", () => {
      rejects("bigint", "abc", /text that is not a number, in a bigint column/);
      rejects("bigint", "0x10", /text that is not a number/);
      rejects("bigint", Buffer.from("10"), /a BLOB in a bigint column/);
      rejects("bigint", Infinity, /not a finite number/);
      rejects("bigint", 1e20, /outside the range of bigint/, 1e20);
      rejects("integer", 2147483648, /outside the range of integer/);
      rejects("smallint", "40000", /outside the range of smallint/);
    });
  });

  describe("boolean columns", () => {
    it("0/1, words, '' and nonzero integers", () => {
      assert.deepEqual(normalize("boolean", 0), { result: false, rules: ["boolean.from-integer"] });
      assert.deepEqual(normalize("boolean", 1), { result: true, rules: ["boolean.from-integer"] });
      assert.deepEqual(normalize("boolean", 2), {
        result: true,
        rules: ["boolean.nonzero-integer-to-true"],
      });
      assert.deepEqual(normalize("boolean", -1), {
        result: true,
        rules: ["boolean.nonzero-integer-to-true"],
      });
      for (const [word, value] of [
        ["True", true],
        ["false", false],
        [" 1 ", true],
        ["0", false],
        ["yes", true],
        ["OFF", false],
        ["t", true],
        ["n", false],
      ] as const) {
        assert.deepEqual(
          normalize("boolean", word),
          { result: value, rules: ["boolean.from-text"] },
          word,
        );
      }
      assert.deepEqual(normalize("boolean", ""), {
        result: null,
        rules: ["boolean.blank-text-to-null"],
      });
      assert.deepEqual(normalize("boolean", "None"), {
        result: null,
        rules: ["boolean.null-word-to-null"],
      });
      assert.deepEqual(normalize("boolean", null), { result: null, rules: [] });
    });

    it("fails on other text, fractions and BLOBs", () => {
      rejects("boolean", "maybe", /not a boolean word/);
      rejects("boolean", 0.5, /fractional part/);
      rejects("boolean", Buffer.from([1]), /a BLOB in a boolean column/);
    });
  });

  describe("double precision columns", () => {
    it("REALs and integers stay, text is parsed, '' is NULL", () => {
      assert.deepEqual(normalize("double", 1700000000.123456), {
        result: 1700000000.123456,
        rules: [],
      });
      assert.deepEqual(normalize("double", 1700000001), { result: 1700000001, rules: [] });
      assert.deepEqual(normalize("double", " 1.5e3 "), {
        result: 1500,
        rules: ["double.from-text"],
      });
      assert.deepEqual(normalize("double", "-Infinity"), {
        result: -Infinity,
        rules: ["double.from-text"],
      });
      assert.deepEqual(normalize("double", ""), {
        result: null,
        rules: ["double.blank-text-to-null"],
      });
    });

    it("fails on an integer that double precision would round, and on junk", () => {
      rejects(
        "double",
        9007199254740992,
        /cannot hold exactly \(beyond ±2\^53\)/,
        9007199254740993n,
      );
      assert.deepEqual(normalize("double", 2 ** 60, { exact: 2n ** 60n }), {
        result: 2 ** 60,
        rules: [],
      });
      rejects("double", "fast", /not a number, in a double precision column/);
    });
  });

  describe("text columns", () => {
    it("keeps text byte for byte, '' included", () => {
      for (const text of ["", " ", "\\N", "a\tb\nc\r\\", "Amélie 🎬 日本語"]) {
        assert.deepEqual(normalize("text", text), { result: text, rules: [] });
      }
    });

    it("removes NUL characters", () => {
      assert.deepEqual(normalize("text", "a\u0000b\u0000"), {
        result: "ab",
        rules: ["text.nul-removed"],
      });
    });

    it("tells a real U+FFFD from invalid UTF-8 by the raw bytes", () => {
      const real = Buffer.from("ok \uFFFD", "utf8");
      assert.deepEqual(normalize("text", "ok \uFFFD", { raw: real }), {
        result: "ok \uFFFD",
        rules: [],
      });
      const invalid = Buffer.from([0x4d, 0xc3, 0xa4, 0xff, 0x6b]);
      assert.deepEqual(normalize("text", "Mä\uFFFDk", { raw: invalid }), {
        result: "Mä\uFFFDk",
        rules: ["text.invalid-utf8-replaced"],
      });
    });

    it("decodes BLOBs, and renders numbers found in untyped columns", () => {
      assert.deepEqual(normalize("text", Buffer.from("hé\u0000", "utf8")), {
        result: "hé",
        rules: ["text.from-blob", "text.nul-removed"],
      });
      assert.deepEqual(normalize("text", 5, { exact: 5n }), {
        result: "5",
        rules: ["text.from-integer"],
      });
      assert.deepEqual(normalize("text", 5, { exact: 5.0 }), {
        result: "5",
        rules: ["text.from-real"],
      });
      assert.deepEqual(normalize("text", 0.1, { exact: 0.1 }), {
        result: "0.1",
        rules: ["text.from-real"],
      });
    });

    it("varchar(n) counts characters, not bytes or UTF-16 units", () => {
      assert.deepEqual(normalize("varchar", "🎬🎬🎬", { maxLength: 3 }), {
        result: "🎬🎬🎬",
        rules: [],
      });
      assert.throws(
        () => normalize("varchar", "abcd", { maxLength: 3 }),
        /longer than the column's 3 characters/,
      );
    });
  });

  describe("json, timestamp and date columns (when a migration uses them)", () => {
    it("json keeps the text, '' is NULL, invalid JSON fails", () => {
      assert.deepEqual(normalize("json", '{"a": 1}'), { result: '{"a": 1}', rules: [] });
      assert.deepEqual(normalize("jsonb", ""), {
        result: null,
        rules: ["json.blank-text-to-null"],
      });
      rejects("json", "{not json", /not valid JSON/);
      rejects("jsonb", '"\\u0000"', /jsonb cannot store/);
    });

    it("epoch seconds, milliseconds, 0 and ISO-8601 text", () => {
      assert.deepEqual(normalize("timestamptz", 1700000000), {
        result: 1700000000000000n,
        rules: ["timestamp.from-epoch-seconds"],
      });
      assert.deepEqual(normalize("timestamptz", 1700000000123), {
        result: 1700000000123000n,
        rules: ["timestamp.from-epoch-milliseconds"],
      });
      assert.deepEqual(normalize("timestamp", 1700000000.5), {
        result: 1700000000500000n,
        rules: ["timestamp.from-epoch-seconds"],
      });
      assert.deepEqual(normalize("timestamptz", 0), {
        result: null,
        rules: ["timestamp.zero-to-null"],
      });
      assert.deepEqual(normalize("timestamptz", "2024-05-01T12:00:00.123456+02:00"), {
        result: 1714557600123456n,
        rules: ["timestamp.from-iso-text"],
      });
      assert.deepEqual(normalize("date", "2024-02-29"), {
        result: "2024-02-29",
        rules: ["date.from-iso-text"],
      });
      assert.deepEqual(normalize("date", 1700000000), {
        result: "2023-11-14",
        rules: ["date.from-epoch-seconds"],
      });
      rejects("date", "2023-02-29", /not an ISO-8601 date/);
      rejects("timestamptz", "yesterday", /neither an epoch number nor ISO-8601/);
      assert.equal(parseIsoMicros("2024-13-01"), undefined);
      assert.equal(parseIsoMicros("2024-01-01 24:00"), undefined);
    });
  });

  describe("COPY text and the checksum's record form", () => {
    it("escapes backslash, tab, newline and CR for COPY; NULL is \\N, a literal \\N is not", () => {
      assert.equal(copyEscape("a\\b\tc\nd\re"), "a\\\\b\\tc\\nd\\re");
      assert.equal(copyEscape("\\N"), "\\\\N");
      assert.equal(copyEscape("\\.\n"), "\\\\.\\n");
      assert.equal(copyEncoderFor("text")(null), "\\N");
      assert.equal(copyEncoderFor("boolean")(true), "t");
      assert.equal(copyEncoderFor("bigint")(9007199254740993n), "9007199254740993");
    });

    it("quotes record fields like PostgreSQL's record output", () => {
      assert.equal(recordField(""), '""');
      assert.equal(recordField("plain"), "plain");
      assert.equal(recordField('say "hi", (x) \\'), '"say ""hi"", (x) \\\\"');
      assert.equal(recordField("non\u00a0breaking"), "non\u00a0breaking");
    });
  });

  describe("secrets", () => {
    it("knows Tautulli's secret columns and redacts their values", () => {
      for (const column of [
        "user_token",
        "server_token",
        "jwt_token",
        "device_token",
        "notifier_config",
        "email_config",
        "newsletter_config",
      ]) {
        assert.ok(isSecretColumn(column), column);
      }
      for (const column of ["username", "title", "body_text", "custom_conditions"])
        assert.ok(!isSecretColumn(column), column);
      assert.equal(describeValue("abcdefgh", true), "<redacted: 8 bytes>");
      assert.equal(describeValue("", false), '""');
      assert.equal(describeValue(Buffer.from([0xff, 0x00]), false), "x'ff00'");
      assert.match(describeValue("x".repeat(500), false), /\.\.\. \(500 bytes\)"$/);
    });
  });

  it("docs/import.md documents every rule the code applies, and no other", () => {
    const doc = fs.readFileSync(path.resolve(__dirname, "..", "..", "docs", "import.md"), "utf8");
    const section = (title: string) => doc.split(`\n## ${title}\n`)[1].split("\n## ")[0];
    const rows = (text: string) =>
      [...text.matchAll(/^\| `([a-z0-9._-]+)` \| (.*) \|$/gm)].map((m) => [
        m[1],
        ...m[2].split(" | "),
      ]);
    assert.deepEqual(
      rows(section("Normalisation rules")).map((r) => r[0]),
      RULES.map((r) => r.id),
    );
    assert.deepEqual(
      rows(section("Tautulli's upgrade rules (old databases)")),
      DBCHECK_RULES.map((r) => [r.id, r.table, r.drops, r.tautulli]),
    );
  });
});
