#!/usr/bin/env node
// proper-lockfile behind the dlock bench's line protocol.
//
//     node peer.js proper-lockfile CONFIG PATH [STALE]
//
// CONFIG "default": the library's defaults (stale 10 s, update stale/2,
// realpath true, onCompromised throws); its default retries: 0 cannot
// wait, so waiting is retries forever every 100 ms. "tuned": retries every
// 1 ms, realpath false (no realpath per call), onCompromised reports on
// stderr instead of crashing the process. STALE (seconds) sets `stale`.
//
// Commands on stdin, one answer each on stdout (see peer.py):
// lock, try, unlock, bench N, pid, lost, log; "ready" first. lock and try
// answer "ok MONO" (process.hrtime.bigint(): CLOCK_MONOTONIC, the clock of
// every process of a round). lost: "told" once onCompromised was called
// (tuned); with the defaults onCompromised throws, which ends the process.
'use strict';

const fs = require('fs');
const readline = require('readline');
const lockfile = require('proper-lockfile');

const [impl, config, path, staleArg] = process.argv.slice(2);
if (impl !== 'proper-lockfile') {
    console.error(`peer.js: no implementation ${impl}`);
    process.exit(2);
}
const tuned = config === 'tuned';
const opts = {};
if (staleArg) {
    opts.stale = Math.round(Number(staleArg) * 1000);
}
// What the library reported since the last lock or try, stamped.
let events = [];
let told = null;
if (tuned) {
    opts.realpath = false;
    opts.onCompromised = (err) => {
        const ev = `${process.hrtime.bigint()} onCompromised: ${String(err.message).replace(/[|\n]/g, ' ')}`;
        events.push(ev);
        if (told === null) told = ev;
        console.error(`peer.js: compromised: ${err.message}`);
    };
}
const every = tuned ? 1 : 100;
const waitOpts = { ...opts, retries: { forever: true, factor: 1, minTimeout: every, maxTimeout: every } };
// With realpath (the default) the file being locked must exist.
fs.closeSync(fs.openSync(path, 'a'));

let release = null;

async function handle(cmd) {
    switch (cmd[0]) {
    case 'lock':
        events = [];
        told = null;
        release = await lockfile.lock(path, waitOpts);
        return `ok ${process.hrtime.bigint()}`;
    case 'try':
        events = [];
        told = null;
        try {
            release = await lockfile.lock(path, opts);
            return `ok ${process.hrtime.bigint()}`;
        } catch (e) {
            if (e.code === 'ELOCKED') return 'busy';
            throw e;
        }
    case 'unlock': {
        const r = release;
        release = null;
        if (!r) throw new Error('not locked');
        await r();
        return 'ok';
    }
    case 'bench': {
        const n = Number(cmd[1]);
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < n; i++) {
            const r = await lockfile.lock(path, opts);
            await r();
        }
        return `ok ${process.hrtime.bigint() - t0}`;
    }
    case 'pid':
        return `ok ${process.pid}`;
    case 'lost':
        if (!tuned) return 'ok unknown';
        return told === null ? 'ok no' : `ok told ${told}`;
    case 'log':
        return `ok ${events.join(' | ')}`.trim();
    case 'quit':
        process.exit(0);
    }
    return `err unknown command ${cmd[0]}`;
}

// Commands are answered one at a time, in order.
let chain = Promise.resolve();
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
    const cmd = line.trim().split(/\s+/);
    if (!cmd[0]) return;
    chain = chain.then(() => handle(cmd)).then(
        (ans) => process.stdout.write(ans + '\n'),
        (e) => process.stdout.write(`err ${e.code || e.name}: ${String(e.message).replace(/\n/g, ' ')}\n`));
});
rl.on('close', () => chain.then(() => process.exit(0)));
process.stdout.write('ready\n');
