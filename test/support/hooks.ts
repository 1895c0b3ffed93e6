/** Mocha root hooks (loaded by .mocharc.json): release the shared real parts after the run. */
import { stopTestPostgres } from "./postgres";

export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await stopTestPostgres();
  },
};
