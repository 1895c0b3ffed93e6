/**
 * The rehearsal's downtime model (lib/rehearsal/rehearse.ts, projectDowntime): only what runs
 * while Plex is stopped counts, and the final sync is the slower of what was measured and its
 * bytes at the assumed link.
 */
import * as assert from "assert/strict";
import { projectDowntime } from "../../lib/rehearsal/rehearse";

describe("rehearsal downtime projection", () => {
  it("adds the stop, the final sync and the pod start; the warm copy is not in it", () => {
    const projection = projectDowntime({
      stopSeconds: 2,
      final: { seconds: 4, bytes: 1_000_000 },
      linkMbps: 1000,
      podStartSeconds: 120,
    });
    assert.deepEqual(
      projection.parts.map((p) => [p.seconds, p.basis]),
      [
        [17, "measured here + 15 s for systemctl stop"],
        [4, "measured here"],
        [120, "assumed: image pull and Plex start-up"],
      ],
    );
    assert.equal(projection.projectedSeconds, 141);
    assert.ok(projection.assumptions.some((a) => a.includes("only the final sync adds")));
  });

  it("takes the link's time when the changed bytes need longer on it than here", () => {
    // 500 MB changed at 100 Mbit/s: 40 s, more than the 3 s measured on loopback.
    const projection = projectDowntime({
      stopSeconds: 0,
      final: { seconds: 3, bytes: 500_000_000 },
      linkMbps: 100,
      podStartSeconds: 60,
    });
    assert.equal(projection.parts[1].seconds, 40);
    assert.match(projection.parts[1].basis, /500000000 bytes at the 100 Mbit\/s link/);
    assert.equal(projection.projectedSeconds, 15 + 40 + 60);
  });
});
