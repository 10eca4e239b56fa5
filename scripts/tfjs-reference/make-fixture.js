#!/usr/bin/env node
/* Reference embeddings of the USE-lite encoder, computed by TensorFlow.js's pure-JavaScript
 * CPU backend (no native binaries) from the same model files sprint reads, and the token ids
 * of the original USE-lite JS package's tokenizer (@tensorflow-models/universal-sentence-encoder).
 *
 * usage: node make-fixture.js [MODEL_DIR] [DEV_TEXT] [OUT_JSON]
 *   defaults: ../shared/models/use-lite, ../shared/data/tinystories-valid-dev.txt,
 *             tests/fixtures/use_lite_reference.json (paths relative to the repository root)
 * Regenerate: cd scripts/tfjs-reference && npm ci && node make-fixture.js */
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const tfconv = require('@tensorflow/tfjs-converter');
const {Tokenizer} = require('@tensorflow-models/universal-sentence-encoder/dist/tokenizer');

const root = path.resolve(__dirname, '..', '..');
const shared = process.env.SPRINT_SHARED || path.resolve(root, '..', 'shared');
const modelDir = process.argv[2] || path.join(shared, 'models', 'use-lite');
const devText = process.argv[3] || path.join(shared, 'data', 'tinystories-valid-dev.txt');
const outPath = process.argv[4] || path.join(root, 'tests', 'fixtures', 'use_lite_reference.json');

/* The sentence rule sprint's `eval` uses (src/model/encoder_eval.c, sp_sentences_split):
 * stories are separated by <|endoftext|>; a sentence ends after '.', '!' or '?' plus any
 * closing quotes ('"', U+201D) when whitespace or the end of the story follows; every
 * whitespace run becomes one space (C: ASCII whitespace; JS's \s also matches Unicode spaces,
 * which the dev text does not hold: the test checks both agree there); sentences are trimmed;
 * empty ones are dropped. */
function splitSentences(text) {
  const out = [];
  for (const story of text.split('<|endoftext|>')) {
    const s = story.replace(/\s+/g, ' ').trim();
    let start = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (c !== '.' && c !== '!' && c !== '?') continue;
      let j = i + 1;
      while (j < s.length && (s[j] === '"' || s[j] === '\u201d')) j++;
      if (j === s.length || s[j] === ' ') {
        const sent = s.slice(start, j).trim();
        if (sent.length) out.push(sent);
        start = j;
        i = j - 1;
      }
    }
    const tail = s.slice(start).trim();
    if (tail.length) out.push(tail);
  }
  return out;
}

async function main() {
  await tf.setBackend('cpu');
  const mj = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8'));
  const manifest = mj.weightsManifest;
  const buffers = [];
  for (const group of manifest) for (const p of group.paths) buffers.push(fs.readFileSync(path.join(modelDir, p)));
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const weightSpecs = [].concat(...manifest.map(g => g.weights));
  const handler = {load: async () => ({modelTopology: mj.modelTopology, weightSpecs, weightData,
                                       format: mj.format, generatedBy: mj.generatedBy,
                                       convertedBy: mj.convertedBy})};
  const model = await tfconv.loadGraphModel(handler);
  const vocab = JSON.parse(fs.readFileSync(path.join(modelDir, 'vocab.json'), 'utf8'));
  const tok = new Tokenizer(vocab);

  const sents = splitSentences(fs.readFileSync(devText, 'utf8'));
  /* 32 sentences spread evenly over the dev text, then edge cases. */
  const chosen = [];
  for (let i = 0; i < 32; i++) chosen.push(sents[Math.floor(i * sents.length / 32)]);
  const long = sents.slice(0, 40).join(' ');
  const edge = ['', '   ', '?!... --- ;;', 'Zyxqv blorptastic snerglewhump naïve café ﬁne Ｈｉ 😀 ☃',
                'tab\tand\nnewline', long];
  const all_s = chosen.concat(edge);

  const items = [];
  for (const s of all_s) {
    const ids = tok.encode(s);
    let emb = null;
    if (ids.length > 0) {
      const indices = tf.tensor2d(ids.map((d, i) => [0, i]), [ids.length, 2], 'int32');
      const values = tf.tensor1d(ids, 'int32');
      const out = await model.executeAsync({indices, values});
      emb = Array.from(await out.data());
      indices.dispose(); values.dispose(); out.dispose();
    }
    /* 9 significant digits round-trip a float32 exactly */
    items.push({text: s, ids, embedding: emb && emb.map(x => Number(x.toPrecision(9)))});
  }
  const fixture = {
    what: 'USE-lite reference: token ids from @tensorflow-models/universal-sentence-encoder 1.3.3 ' +
          'Tokenizer, embeddings from @tensorflow/tfjs-converter + tfjs-backend-cpu 3.21.0 ' +
          '(pure JavaScript) on the same model files; embedding null where the tokenizer returns ' +
          'no ids (the graph is not defined on an empty input)',
    generator: 'scripts/tfjs-reference/make-fixture.js',
    tfjs_version: tf.version_core,
    n_dev_sentences: sents.length,
    sentences: items,
  };
  /* one sentence per line keeps diffs readable */
  const head = JSON.stringify(Object.assign({}, fixture, {sentences: []}), null, 1).replace(/\[\]\n}$/, '[\n');
  fs.writeFileSync(outPath, head + items.map(x => JSON.stringify(x)).join(',\n') + '\n]\n}\n');
  console.error(`wrote ${items.length} sentences to ${outPath}`);
}
main().catch(e => { console.error('make-fixture: ' + (e && e.stack || e)); process.exit(1); });
