/**
 * Which recordings of each session are being written right now, and who wants to hear of new ones: the
 * index a live watcher starts from. A recording is in it from openAsciicast until its file is closed.
 */
export class LiveRecordings<C> {
  private readonly open = new Map<string, Set<C>>();
  private readonly watchers = new Map<string, Set<(cast: C) => void>>();

  /** `cast` of `sessionId` is being written; `onFinished` tells when it is complete. */
  opened(sessionId: string, cast: C, onFinished: (done: () => void) => void): void {
    let set = this.open.get(sessionId);
    if (!set) this.open.set(sessionId, (set = new Set()));
    set.add(cast);
    onFinished(() => {
      const s = this.open.get(sessionId);
      s?.delete(cast);
      if (s && s.size === 0) this.open.delete(sessionId);
    });
    for (const w of this.watchers.get(sessionId) ?? []) {
      try {
        w(cast);
      } catch {
        // A watcher's failure must never keep a recording from opening.
      }
    }
  }

  /** Call `onCast` for each open recording of the session now and for each one opened later. */
  watch(sessionId: string, onCast: (cast: C) => void): () => void {
    let set = this.watchers.get(sessionId);
    if (!set) this.watchers.set(sessionId, (set = new Set()));
    set.add(onCast);
    for (const c of [...(this.open.get(sessionId) ?? [])]) onCast(c);
    return () => {
      const s = this.watchers.get(sessionId);
      s?.delete(onCast);
      if (s && s.size === 0) this.watchers.delete(sessionId);
    };
  }
}
