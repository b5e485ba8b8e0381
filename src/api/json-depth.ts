/** Deepest nesting of arrays and objects accepted in a request body. */
export const MAX_JSON_DEPTH = 16;

/**
 * True when `value` nests arrays/objects deeper than `maxDepth`. Iterative, so a hostile
 * body cannot overflow the stack here.
 */
export function exceedsJsonDepth(value: unknown, maxDepth: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth + 1 > maxDepth) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}
