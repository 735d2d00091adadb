import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '@slmkit/core';
import { createSampler, isStop, streamFromCallbacks } from '../src/generation/sampling.js';
import { IncrementalDecoder, Tokenizer, hasTokenizer, loadTokenizer, tokenizerFromJSON } from '../src/tokenizer.js';

// ---------------------------------------------------------------------------------------------------------------
// Two tiny tokenizers built here, in the two layouts real checkpoints use.

const SPECIAL = ['<unk>', '<s>', '</s>'];
const addedTokens = () =>
  SPECIAL.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
const bosTemplate = {
  type: 'TemplateProcessing',
  single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
  pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
  special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
};

/** GPT-2's byte-to-character table: every byte gets a printable character, so any UTF-8 text has tokens. */
function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let c = 33; c <= 126; c++) printable.push(c);
  for (let c = 161; c <= 172; c++) printable.push(c);
  for (let c = 174; c <= 255; c++) printable.push(c);
  const table = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  return table;
}

/** Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM): the 256 byte characters plus a few merges. */
function byteLevelBPE(): { json: Record<string, unknown>; vocab: Record<string, number> } {
  const vocab: Record<string, number> = {};
  SPECIAL.forEach((t, i) => (vocab[t] = i));
  for (const ch of bytesToUnicode()) vocab[ch] = Object.keys(vocab).length;
  const merges: Array<[string, string]> = [['Ġ', 'w'], ['o', 'r'], ['Ġw', 'or'], ['l', 'd'], ['h', 'e'], ['l', 'l'], ['he', 'll'], ['hell', 'o']];
  for (const [a, b] of merges) vocab[a + b] = Object.keys(vocab).length;
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: bosTemplate,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  return { json, vocab };
}

/** SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Mistral): `▁` for spaces, `<0xNN>` for bytes. */
function sentencePieceBPE(): { json: Record<string, unknown>; vocab: Record<string, number> } {
  const vocab: Record<string, number> = {};
  SPECIAL.forEach((t, i) => (vocab[t] = i));
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = Object.keys(vocab).length;
  for (const ch of ['▁', 'h', 'e', 'l', 'o', 'w', 'r', 'd']) vocab[ch] = Object.keys(vocab).length;
  const merges = [['▁', 'h'], ['e', 'l'], ['▁h', 'el'], ['l', 'o'], ['▁hel', 'lo'], ['▁', 'w'], ['o', 'r'], ['▁w', 'or'], ['l', 'd'], ['▁wor', 'ld']];
  for (const [a, b] of merges) vocab[a! + b!] = Object.keys(vocab).length;
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: bosTemplate,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges,
    },
  };
  return { json, vocab };
}

const CONFIG = { bos_token: '<s>', eos_token: { __type: 'AddedToken', content: '</s>' }, unk_token: '<unk>', clean_up_tokenization_spaces: false };
const TEXT = 'hello world, héllo wörld! ✓ 😀';

const dirs: string[] = [];
function folder(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'slmkit-tokenizer-'));
  dirs.push(dir);
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

// ---------------------------------------------------------------------------------------------------------------

describe('loadTokenizer', () => {
  const { json, vocab } = byteLevelBPE();
  const dir = folder({ 'tokenizer.json': json, 'tokenizer_config.json': CONFIG });

  it('loads a folder and round-trips text', async () => {
    const tokenizer = (await loadTokenizer(dir))!;
    expect(tokenizer).toBeInstanceOf(Tokenizer);
    const ids = tokenizer.encode(TEXT);
    expect(ids[0]).toBe(1); // the post-processor's <s>
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe(TEXT);
    expect(tokenizer.decode(ids)).toBe(`<s>${TEXT}`);
  });

  it('encodes with the merges, and special tokens as single ids', async () => {
    const tokenizer = (await loadTokenizer(dir))!;
    expect(tokenizer.encode('hello world', { addSpecialTokens: false })).toEqual([vocab.hello, vocab['Ġwor'], vocab.ld]);
    expect(tokenizer.tokenize('hello world')).toEqual(['hello', 'Ġwor', 'ld']);
    expect(tokenizer.encode('hello</s>')).toEqual([1, vocab.hello, 2]);
    expect(tokenizer.tokenToId('Ġwor')).toBe(vocab['Ġwor']);
    expect(tokenizer.tokenToId('nope')).toBeNull();
    expect(tokenizer.idToToken(vocab.hello!)).toBe('hello');
    expect(tokenizer.vocabSize).toBe(3 + 256 + 8);
  });

  it('recognises the special tokens from tokenizer_config.json', async () => {
    const tokenizer = (await loadTokenizer(dir))!;
    expect(tokenizer.specialTokens).toEqual({
      bos: { token: '<s>', id: 1 },
      eos: { token: '</s>', id: 2 },
      pad: null,
      unk: { token: '<unk>', id: 0 },
      all: [{ token: '<unk>', id: 0 }, { token: '<s>', id: 1 }, { token: '</s>', id: 2 }],
    });
    expect([tokenizer.bosTokenId, tokenizer.eosTokenId, tokenizer.padTokenId]).toEqual([1, 2, null]);
    expect(tokenizer.isSpecial(2)).toBe(true);
    expect(tokenizer.isSpecial(vocab.hello!)).toBe(false);
  });

  it('accepts the tokenizer.json path and file: URLs', async () => {
    const ids = (await loadTokenizer(dir))!.encode(TEXT);
    expect((await loadTokenizer(join(dir, 'tokenizer.json')))!.encode(TEXT)).toEqual(ids);
    expect((await loadTokenizer(pathToFileURL(dir)))!.encode(TEXT)).toEqual(ids);
    expect((await loadTokenizer(pathToFileURL(join(dir, 'tokenizer.json')).href))!.encode(TEXT)).toEqual(ids);
  });

  it('returns null, and hasTokenizer false, when there is no tokenizer.json', async () => {
    const empty = folder({ 'config.json': { model_type: 'llama' } });
    expect(await loadTokenizer(empty)).toBeNull();
    expect(await loadTokenizer(join(empty, 'missing'))).toBeNull();
    expect(await hasTokenizer(empty)).toBe(false);
    expect(await hasTokenizer(dir)).toBe(true);
  });

  it('works without tokenizer_config.json: bos from the post-processor, unk from the model', async () => {
    const { json: sp } = sentencePieceBPE();
    const tokenizer = (await loadTokenizer(folder({ 'tokenizer.json': sp })))!;
    expect(tokenizer.specialTokens.bos).toEqual({ token: '<s>', id: 1 });
    expect(tokenizer.specialTokens.eos).toBeNull();
    expect(tokenizer.specialTokens.unk).toEqual({ token: '<unk>', id: 0 });
  });

  it('loads from a URL through fetch: 404 means absent, other failures throw', async () => {
    const served: Record<string, unknown> = {
      'https://hub.example/m/tokenizer.json': json,
      'https://hub.example/m/tokenizer_config.json': CONFIG,
      'https://hub.example/no-config/tokenizer.json': json,
    };
    const requests: string[] = [];
    const fakeFetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
      const url = String(input);
      requests.push(`${init?.method ?? 'GET'} ${url}`);
      if (url.startsWith('https://hub.example/broken/')) return new Response('oops', { status: 500 });
      const body = served[url];
      return body === undefined ? new Response('missing', { status: 404 }) : new Response(JSON.stringify(body));
    }) as typeof fetch;

    const remote = (await loadTokenizer('https://hub.example/m', { fetch: fakeFetch }))!;
    expect(remote.decode(remote.encode(TEXT), { skipSpecialTokens: true })).toBe(TEXT);
    expect(remote.eosTokenId).toBe(2);
    expect(requests).toEqual(['GET https://hub.example/m/tokenizer.json', 'GET https://hub.example/m/tokenizer_config.json']);

    const noConfig = (await loadTokenizer(new URL('https://hub.example/no-config/tokenizer.json'), { fetch: fakeFetch }))!;
    expect(noConfig.eosTokenId).toBeNull();
    expect(await loadTokenizer('https://hub.example/none/', { fetch: fakeFetch })).toBeNull();
    await expect(loadTokenizer('https://hub.example/broken/', { fetch: fakeFetch })).rejects.toThrow(/HTTP 500/);

    expect(await hasTokenizer('https://hub.example/m/', { fetch: fakeFetch })).toBe(true);
    expect(await hasTokenizer('https://hub.example/none', { fetch: fakeFetch })).toBe(false);
    expect(requests.at(-1)).toBe('HEAD https://hub.example/none/tokenizer.json');
  });

  it('throws a ConfigError naming the file for malformed JSON', async () => {
    await expect(loadTokenizer(folder({ 'tokenizer.json': '{ not json' }))).rejects.toThrow(/tokenizer\.json is not valid JSON/);
    await expect(loadTokenizer(folder({ 'tokenizer.json': '[1, 2]' }))).rejects.toThrow(/must hold a JSON object, found an array/);
    await expect(loadTokenizer(folder({ 'tokenizer.json': json, 'tokenizer_config.json': '{' }))).rejects.toThrow(
      /tokenizer_config\.json is not valid JSON/,
    );
    await expect(loadTokenizer(folder({ 'tokenizer.json': { version: '1.0' } }))).rejects.toThrow(ConfigError);
  });
});

describe('tokenizerFromJSON', () => {
  it('round-trips SentencePiece-style text with byte fallback', () => {
    const { json, vocab } = sentencePieceBPE();
    const tokenizer = tokenizerFromJSON(JSON.stringify(json), CONFIG);
    expect(tokenizer.encode('hello world')).toEqual([1, vocab['▁hello'], vocab['▁world']]);
    const ids = tokenizer.encode(TEXT);
    expect(ids).toContain(vocab['<0xC3>']); // é has no token: its two bytes do
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe(TEXT);
  });

  it('skips ids the vocabulary lacks, and decodes nothing to an empty string', () => {
    const tokenizer = tokenizerFromJSON(byteLevelBPE().json, CONFIG);
    const ids = tokenizer.encode('hello', { addSpecialTokens: false });
    expect(tokenizer.decode([...ids, 100_000])).toBe('hello');
    expect(tokenizer.decode([])).toBe('');
    expect(() => tokenizer.decode([1.5])).toThrow(ConfigError);
  });

  it('rejects a config naming a special token that is not in the vocabulary', () => {
    expect(() => tokenizerFromJSON(byteLevelBPE().json, { eos_token: '<|end|>' })).toThrow(/eos_token "<\|end\|>" is not in the vocabulary/);
    expect(() => tokenizerFromJSON({ model: 'BPE' })).toThrow(/model must be an object/);
    expect(() => tokenizerFromJSON('{')).toThrow(ConfigError);
  });
});

describe('IncrementalDecoder', () => {
  it.each([
    ['byte-level', byteLevelBPE],
    ['sentencepiece', sentencePieceBPE],
  ])('streams %s text without broken characters, joining to the full decode', (_, build) => {
    const tokenizer = tokenizerFromJSON(build().json, CONFIG);
    const ids = tokenizer.encode(TEXT);
    const decoder = new IncrementalDecoder(tokenizer, { skipSpecialTokens: true });
    const chunks = ids.map((id) => decoder.push(id));
    chunks.push(decoder.flush());
    expect(chunks.join('')).toBe(TEXT);
    expect(chunks.some((c) => c.includes('\uFFFD'))).toBe(false);
    // Multi-byte characters arrive as several tokens: some pushes must have held text back.
    expect(chunks.filter((c) => c === '').length).toBeGreaterThan(1);
  });

  it('gives out a half character only at flush', () => {
    const tokenizer = tokenizerFromJSON(byteLevelBPE().json, CONFIG);
    const [first] = tokenizer.encode('é', { addSpecialTokens: false });
    const decoder = new IncrementalDecoder(tokenizer);
    expect(decoder.push(first!)).toBe('');
    expect(decoder.flush()).toBe('\uFFFD');
  });
});

describe('text through a generation loop', () => {
  // What `generate(prompt: string)` does around the model: encode the prompt, pick tokens from logits until a stop
  // token, stream text through an IncrementalDecoder, decode the new ids. The "model" here returns logits that
  // spell a fixed continuation, so the loop's plumbing is what is tested.
  const tokenizer = tokenizerFromJSON(byteLevelBPE().json, CONFIG);
  const continuation = tokenizer.encode(' héllo wörld ✓', { addSpecialTokens: false });

  function fakeModelLogits(step: number): Float32Array {
    const logits = new Float32Array(tokenizer.vocabSize).fill(-5);
    logits[step < continuation.length ? continuation[step]! : tokenizer.eosTokenId!] = 5;
    return logits;
  }

  async function generate(prompt: string, onText: (text: string) => void): Promise<{ ids: number[]; text: string }> {
    const ids = tokenizer.encode(prompt);
    const promptLength = ids.length;
    const sampler = createSampler({ seed: 0 }); // greedy
    const stops = [tokenizer.eosTokenId!];
    const streamer = new IncrementalDecoder(tokenizer, { skipSpecialTokens: true });
    for (let step = 0; step < 64; step++) {
      const next = sampler.sample(fakeModelLogits(step), ids);
      ids.push(next);
      onText(streamer.push(next));
      if (isStop(next, stops)) break;
    }
    onText(streamer.flush());
    return { ids, text: tokenizer.decode(ids.slice(promptLength), { skipSpecialTokens: true }) };
  }

  it('returns the continuation as text and streams the same text', async () => {
    const streamed: string[] = [];
    const result = await generate('hello world', (t) => streamed.push(t));
    expect(result.text).toBe(' héllo wörld ✓');
    expect(streamed.join('')).toBe(result.text);
    expect(result.ids.at(-1)).toBe(tokenizer.eosTokenId);
    expect(tokenizer.decode(result.ids, { skipSpecialTokens: true })).toBe('hello world héllo wörld ✓');
  });

  it('streams the same text through an async iterator', async () => {
    const stream = streamFromCallbacks<string>(async (emit) => {
      await generate('hello world', (t) => {
        if (t !== '') emit(t);
      });
    });
    let text = '';
    for await (const chunk of stream) text += chunk;
    expect(text).toBe(' héllo wörld ✓');
  });
});
