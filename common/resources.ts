/** Small facts about pushed resources that every proxy needs: their key and label selection. */

/** `<namespace>/<name>` of a namespaced resource. */
export function keyOf(r: { namespace: string; name: string }): string {
  return `${r.namespace}/${r.name}`;
}

/** Returns true when every selector label is present with the same value in `labels`; no selector selects all. */
export function selectorMatches(
  selector: Readonly<Record<string, string>> | undefined,
  labels: Readonly<Record<string, string | undefined>>,
): boolean {
  if (selector === undefined) return true;
  for (const [k, v] of Object.entries(selector)) {
    if (labels[k] !== v) return false;
  }
  return true;
}
