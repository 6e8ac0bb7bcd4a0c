/**
 * Event topic patterns: `*` matches any run of characters (including none), every other character matches
 * itself. The one matcher for them, used for permission checks (host side, on every emit) and subscriptions.
 *
 * Why not a regular expression: patterns come from manifests and topics from plugins, and `a*a*a*...b` as the
 * regex `^a.*a.*...b$` backtracks catastrophically against a long topic, freezing the host's thread (issue 10,
 * class 5). Here the first and last segments are anchored and each middle segment is taken at its leftmost
 * occurrence after the previous one (`indexOf`): for `*`-only globs the leftmost choice is always safe, so
 * nothing is retried and the work is linear in the topic (times the longest segment, at most 128).
 */

/** The longest pattern a manifest may give (the schema's form already caps it at 128). */
export const MAX_TOPIC_PATTERN_LENGTH = 128;
/** The most `*` a pattern may hold: more says nothing a topic scheme needs. Checked at validate. */
export const MAX_TOPIC_PATTERN_STARS = 8;
/** The longest topic the host matches or delivers (an emitted topic is a name, not a payload). */
export const MAX_TOPIC_LENGTH = 256;

/** Whether `topic` matches `pattern`. Linear in `topic.length`; never throws. */
export function matchTopic(pattern: string, topic: string): boolean {
  // `*` alone (the default policy's grant for events) matches everything: no split for it.
  if (pattern === '*') return true;
  const star = pattern.indexOf('*');
  if (star < 0) return pattern === topic;
  const segments = pattern.split('*');
  const first = segments[0] as string;
  const last = segments[segments.length - 1] as string;
  if (topic.length < first.length + last.length) return false;
  if (!topic.startsWith(first) || !topic.endsWith(last)) return false;
  let at = first.length;
  const end = topic.length - last.length;
  for (let i = 1; i < segments.length - 1; i++) {
    const segment = segments[i] as string;
    if (segment === '') continue;
    const found = topic.indexOf(segment, at);
    if (found < 0 || found + segment.length > end) return false;
    at = found + segment.length;
  }
  return true;
}

/**
 * Whether `allowed` covers every topic `requested` can match. `requested`'s stars are taken as literal
 * characters: a segment of `allowed` holds no star, so it can only line up with literal text of `requested`,
 * and each of `requested`'s stars then falls inside one of `allowed`'s, which absorbs whatever it stands for.
 * Sound (never says yes wrongly), though not complete.
 */
export function patternCovers(allowed: string, requested: string): boolean {
  return allowed === requested || matchTopic(allowed, requested);
}

/** Why `pattern` is not an acceptable topic pattern, or undefined when it is. For validate's messages. */
export function topicPatternProblem(pattern: string): string | undefined {
  if (pattern.length === 0) return 'is empty';
  if (pattern.length > MAX_TOPIC_PATTERN_LENGTH)
    return `is ${pattern.length} characters long, above the cap of ${MAX_TOPIC_PATTERN_LENGTH}`;
  let stars = 0;
  for (const c of pattern) if (c === '*') stars++;
  if (stars > MAX_TOPIC_PATTERN_STARS)
    return `holds ${stars} "*", above the cap of ${MAX_TOPIC_PATTERN_STARS}`;
  return undefined;
}
