// A LiveKit access token (HS256 JWT) with node's crypto: no SDK needed.
//   node tests/browser/token.mjs --api-key devkey --api-secret secret --room demo --identity web-1 [--ttl 3600]
import { createHmac } from 'node:crypto';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const b64url = (x) => Buffer.from(x).toString('base64url');

export function mintToken({ apiKey, apiSecret, room, identity, name, ttlSeconds = 3600 }) {
  if (!apiKey || !apiSecret || !room || !identity) {
    throw new Error('mintToken needs apiKey, apiSecret, room and identity');
  }
  const nowS = Math.floor(Date.now() / 1000);
  const claims = {
    iss: apiKey,
    sub: identity,
    nbf: nowS - 10,
    exp: nowS + ttlSeconds,
    name: name || identity,
    video: { room, roomJoin: true, canPublish: true, canSubscribe: true, canPublishData: true },
  };
  const unsigned = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  const sig = createHmac('sha256', apiSecret).update(unsigned).digest('base64url');
  return `${unsigned}.${sig}`;
}

if (import.meta.url === pathToFileURL(process.argv[1] || '').href) {
  const { values } = parseArgs({
    options: {
      'api-key': { type: 'string', default: 'devkey' },
      'api-secret': { type: 'string', default: 'secret' },
      room: { type: 'string' },
      identity: { type: 'string' },
      ttl: { type: 'string', default: '3600' },
    },
  });
  process.stdout.write(
    mintToken({
      apiKey: values['api-key'],
      apiSecret: values['api-secret'],
      room: values.room,
      identity: values.identity,
      ttlSeconds: Number(values.ttl),
    }) + '\n',
  );
}
