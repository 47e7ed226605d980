// Browser side of the meeting-agent browser client (see README.md).
// Joins a LiveKit room with livekit-client, publishes the microphone (Chromium's fake capture
// device, fed from a WAV by driver.mjs) and records, as epoch milliseconds
// (performance.timeOrigin + performance.now(), the same host clock as Date.now()):
// captions (text streams on `lk.transcription` and legacy TranscriptionReceived), the local
// microphone's speech starts/ends and its RMS envelope, participants and tracks.
(() => {
  'use strict';
  const LK = window.LivekitClient;
  const now = () => performance.timeOrigin + performance.now();
  const round1 = (x) => Math.round(x * 10) / 10;
  const round3 = (x) => Math.round(x * 1000) / 1000;
  const FLOOR_DB = -120;

  const R = {
    schema: 1,
    client: {
      livekit_client_version: LK ? LK.version : null,
      user_agent: navigator.userAgent,
    },
    page_loaded_epoch_ms: now(),
    url: null,
    room_name: null,
    local_identity: null,
    local_sid: null,
    connect_started_epoch_ms: null,
    connected_epoch_ms: null,
    disconnected_epoch_ms: null,
    disconnect_reason: null,
    mic: null,
    agent_identity: null,
    participants: [],
    tracks: [],
    text_streams: [],
    transcriptions: [],
    speech: null,
    envelope: null,
    connection: [],
    errors: [],
  };
  let room = null;
  let audio = null; // see prepareAnalysis()

  const status = (s) => {
    const el = document.getElementById('status');
    if (el) el.textContent = s;
  };
  const error = (where, e) => {
    const message = `${where}: ${e && e.message ? e.message : String(e)}`;
    R.errors.push({ epoch_ms: now(), message });
    console.error(message);
  };

  function kindName(kind) {
    if (kind === undefined || kind === null) return null;
    const names = LK.ParticipantKind || {};
    return typeof names[kind] === 'string' ? names[kind] : String(kind);
  }

  function participantRecord(event, p) {
    const kind = p.kind;
    const isAgent = p.isAgent === true || kindName(kind) === 'AGENT';
    const rec = {
      event,
      epoch_ms: now(),
      identity: p.identity,
      sid: p.sid,
      name: p.name || null,
      kind: kind === undefined ? null : kind,
      kind_name: kindName(kind),
      is_agent: isAgent,
      attributes: { ...(p.attributes || {}) },
    };
    R.participants.push(rec);
    if (isAgent && event !== 'disconnected' && !R.agent_identity) R.agent_identity = p.identity;
  }

  // --- captions -------------------------------------------------------------------------------
  function onTextStream(reader, participantInfo) {
    const header = now();
    const info = reader.info || {};
    const attrs = { ...(info.attributes || {}) };
    const finalAttr = attrs['lk.transcription_final'];
    const rec = {
      stream_id: info.id,
      topic: info.topic,
      sender_identity: participantInfo ? participantInfo.identity : null,
      mime_type: info.mimeType || null,
      sent_timestamp_ms: typeof info.timestamp === 'number' ? info.timestamp : null,
      attributes: attrs,
      final: finalAttr === undefined ? null : finalAttr === 'true',
      segment_id: attrs['lk.segment_id'] ?? null,
      transcribed_track_id: attrs['lk.transcribed_track_id'] ?? null,
      header_epoch_ms: header,
      first_chunk_epoch_ms: null,
      done_epoch_ms: null,
      chunks: [],
      text: '',
      error: null,
    };
    R.text_streams.push(rec);
    (async () => {
      try {
        for await (const chunk of reader) {
          const t = now();
          if (rec.first_chunk_epoch_ms === null) rec.first_chunk_epoch_ms = t;
          rec.chunks.push({ epoch_ms: t, text: chunk });
          rec.text += chunk;
        }
        rec.done_epoch_ms = now();
      } catch (e) {
        rec.error = String(e && e.message ? e.message : e);
        rec.done_epoch_ms = now();
      }
    })();
  }

  function onTranscription(segments, participant, publication) {
    R.transcriptions.push({
      epoch_ms: now(),
      participant_identity: participant ? participant.identity : null,
      track_sid: publication ? publication.trackSid : null,
      segments: (segments || []).map((s) => ({
        id: s.id,
        text: s.text,
        final: !!s.final,
        language: s.language || null,
        start_time: s.startTime,
        end_time: s.endTime,
        first_received_epoch_ms: s.firstReceivedTime,
        last_received_epoch_ms: s.lastReceivedTime,
      })),
    });
  }

  // --- local microphone speech detection --------------------------------------------------------
  // An AudioWorklet computes the RMS of every 10 ms frame of the published track; frames are
  // contiguous in the AudioContext's sample clock. Context time maps to the host clock with the
  // smallest (receipt time - frame end) seen: the worklet -> main thread hop is then ~0.
  class Detector {
    constructor(o) {
      this.onDb = o.on_db;
      this.offDb = o.off_db;
      this.hangoverMs = o.hangover_ms;
      this.minOnMs = o.min_on_ms;
      this.speaking = false;
      this.candidateStart = null; // ctx ms of the first loud frame of a pending start
      this.lastLoudEnd = null; // ctx ms of the end of the last frame >= off_db
      this.events = []; // { type, ctx_ms }
    }
    frame(startMs, endMs, db) {
      if (!this.speaking) {
        if (db >= this.onDb) {
          if (this.candidateStart === null) this.candidateStart = startMs;
          if (endMs - this.candidateStart >= this.minOnMs) {
            this.speaking = true;
            this.lastLoudEnd = endMs;
            this.events.push({ type: 'speech_start', ctx_ms: this.candidateStart });
            this.candidateStart = null;
          }
        } else {
          this.candidateStart = null;
        }
      } else {
        if (db >= this.offDb) this.lastLoudEnd = endMs;
        else if (endMs - this.lastLoudEnd >= this.hangoverMs) {
          this.speaking = false;
          this.events.push({ type: 'speech_end', ctx_ms: this.lastLoudEnd });
        }
      }
    }
  }

  // The AudioContext and worklet are ready before the microphone opens: Chromium's fake device
  // starts the file when it opens, and frames before the source is connected are not seen.
  async function prepareAnalysis(opts) {
    const ctx = new AudioContext();
    await ctx.audioWorklet.addModule('/rms-worklet.js');
    await ctx.resume();
    const frameSamples = Math.round(ctx.sampleRate / 100);
    const frameMs = (frameSamples / ctx.sampleRate) * 1000;
    const a = {
      ctx,
      node: null,
      source: null,
      detector: new Detector(opts),
      frameMs,
      frameSamples,
      firstFrameCtxMs: null,
      offsetMs: Infinity, // epoch ms = ctx ms + offsetMs
      db: [],
    };
    return a;
  }

  function attachAnalysis(a, mediaStreamTrack) {
    const ctx = a.ctx;
    const source = ctx.createMediaStreamSource(new MediaStream([mediaStreamTrack]));
    const node = new AudioWorkletNode(ctx, 'rms-meter', {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { frameSamples: a.frameSamples },
    });
    const sink = ctx.createGain();
    sink.gain.value = 0;
    source.connect(node);
    node.connect(sink);
    sink.connect(ctx.destination);
    a.source = source;
    a.node = node;
    const frameMs = a.frameMs;
    node.port.onmessage = (ev) => {
      const recv = now();
      for (const f of ev.data) {
        // f: [startCtxFrame, rms]
        const startMs = (f[0] / ctx.sampleRate) * 1000;
        const endMs = startMs + frameMs;
        if (a.firstFrameCtxMs === null) a.firstFrameCtxMs = startMs;
        const off = recv - endMs;
        if (off < a.offsetMs) a.offsetMs = off;
        const db = f[1] > 0 ? Math.max(FLOOR_DB, 20 * Math.log10(f[1])) : FLOOR_DB;
        // Frames are contiguous unless the context skipped render quanta: gaps stay null.
        const idx = Math.round((startMs - a.firstFrameCtxMs) / frameMs);
        while (a.db.length < idx) a.db.push(null);
        a.db.push(round1(db));
        a.detector.frame(startMs, endMs, db);
      }
    };
  }

  function speechResults() {
    if (!audio) return { events: [] };
    const d = audio.detector;
    const off = audio.offsetMs;
    return {
      on_db: d.onDb,
      off_db: d.offDb,
      hangover_ms: d.hangoverMs,
      min_on_ms: d.minOnMs,
      events: d.events.map((e) => ({
        type: e.type,
        epoch_ms: round3(e.ctx_ms + off),
        ctx_ms: round3(e.ctx_ms),
      })),
      speaking_now: d.speaking,
    };
  }

  function envelopeResults() {
    if (!audio || audio.firstFrameCtxMs === null) return null;
    return {
      frame_ms: audio.frameMs,
      sample_rate: audio.ctx.sampleRate,
      t0_epoch_ms: round3(audio.firstFrameCtxMs + audio.offsetMs),
      t0_ctx_ms: round3(audio.firstFrameCtxMs),
      clock_offset_ms: round3(audio.offsetMs),
      floor_db: FLOOR_DB,
      db: audio.db,
    };
  }

  // --- room -----------------------------------------------------------------------------------
  async function start(url, token, options = {}) {
    if (room) throw new Error('already started');
    if (!LK) throw new Error('PAGE_ERROR: livekit-client UMD did not load');
    const speechOpts = {
      on_db: -40,
      off_db: -50,
      hangover_ms: 150,
      min_on_ms: 20,
      ...(options.speech || {}),
    };
    R.url = url;
    status('connecting');
    room = new LK.Room({ adaptiveStream: false, dynacast: false });
    const E = LK.RoomEvent;
    room
      .on(E.ParticipantConnected, (p) => participantRecord('connected', p))
      .on(E.ParticipantDisconnected, (p) => participantRecord('disconnected', p))
      .on(E.TranscriptionReceived, onTranscription)
      .on(E.TrackSubscribed, (track, pub, p) =>
        R.tracks.push({
          event: 'subscribed',
          epoch_ms: now(),
          participant_identity: p.identity,
          track_sid: pub.trackSid,
          kind: pub.kind,
          source: pub.source,
        }),
      )
      .on(E.TrackUnsubscribed, (track, pub, p) =>
        R.tracks.push({
          event: 'unsubscribed',
          epoch_ms: now(),
          participant_identity: p.identity,
          track_sid: pub.trackSid,
          kind: pub.kind,
          source: pub.source,
        }),
      )
      .on(E.ConnectionStateChanged, (s) =>
        R.connection.push({ event: 'state', state: s, epoch_ms: now() }),
      )
      .on(E.Reconnecting, () => R.connection.push({ event: 'reconnecting', epoch_ms: now() }))
      .on(E.Reconnected, () => R.connection.push({ event: 'reconnected', epoch_ms: now() }))
      .on(E.Disconnected, (reason) => {
        R.disconnected_epoch_ms = now();
        R.disconnect_reason = reason === undefined ? null : kindOrName(LK.DisconnectReason, reason);
        R.connection.push({ event: 'disconnected', reason: R.disconnect_reason, epoch_ms: now() });
      })
      .on(E.MediaDevicesError, (e) => error('media devices', e));
    room.registerTextStreamHandler('lk.transcription', onTextStream);

    R.connect_started_epoch_ms = now();
    try {
      await room.connect(url, token, { autoSubscribe: true });
    } catch (e) {
      throw new Error(`CONNECT_FAILED: ${e && e.message ? e.message : e}`);
    }
    R.connected_epoch_ms = now();
    R.room_name = room.name;
    R.local_identity = room.localParticipant.identity;
    R.local_sid = room.localParticipant.sid;
    for (const p of room.remoteParticipants.values()) participantRecord('present', p);
    status('connected; opening microphone');

    try {
      audio = await prepareAnalysis(speechOpts);
    } catch (e) {
      throw new Error(`ANALYSIS_FAILED: ${e && e.message ? e.message : e}`);
    }
    let track;
    const captureStarted = now();
    try {
      track = await LK.createLocalAudioTrack({
        echoCancellation: false,
        noiseSuppression: false,
        autoGainControl: false,
        voiceIsolation: false,
        channelCount: 1,
        ...(options.audio || {}),
      });
    } catch (e) {
      throw new Error(`MIC_FAILED: ${e && e.message ? e.message : e}`);
    }
    const captureOpened = now();
    try {
      attachAnalysis(audio, track.mediaStreamTrack);
    } catch (e) {
      throw new Error(`ANALYSIS_FAILED: ${e && e.message ? e.message : e}`);
    }
    let pub;
    try {
      pub = await room.localParticipant.publishTrack(track, {
        source: LK.Track.Source.Microphone,
        ...(options.publish || {}),
      });
    } catch (e) {
      throw new Error(`PUBLISH_FAILED: ${e && e.message ? e.message : e}`);
    }
    const mst = track.mediaStreamTrack;
    R.mic = {
      track_sid: pub.trackSid,
      label: mst.label,
      settings: mst.getSettings(),
      capture_requested_epoch_ms: captureStarted,
      capture_opened_epoch_ms: captureOpened,
      published_epoch_ms: now(),
    };
    status(`publishing ${pub.trackSid} as ${R.local_identity} in ${R.room_name}`);
    return {
      room: R.room_name,
      identity: R.local_identity,
      mic_track_sid: pub.trackSid,
      published_epoch_ms: R.mic.published_epoch_ms,
    };
  }

  function kindOrName(enumObj, v) {
    return enumObj && typeof enumObj[v] === 'string' ? enumObj[v] : v;
  }

  function results() {
    const out = { ...R, speech: speechResults(), envelope: envelopeResults() };
    out.results_epoch_ms = now();
    if (audio) out.audio_context_state = audio.ctx.state;
    return JSON.parse(JSON.stringify(out));
  }

  async function stop() {
    if (room) await room.disconnect();
    if (audio) await audio.ctx.close();
  }

  window.addEventListener('error', (e) => error('window error', e.error || e.message));
  window.addEventListener('unhandledrejection', (e) => error('unhandled rejection', e.reason));
  window.start = start;
  window.stop = stop;
  window.results = results;
  window.lkRoom = () => room;

  const q = new URLSearchParams(location.search);
  if (q.get('url') && q.get('token')) {
    window.addEventListener('load', () => {
      start(q.get('url'), q.get('token')).catch((e) => {
        error('start', e);
        status(`failed: ${e.message}`);
      });
    });
  } else {
    status('ready: call window.start(url, token)');
  }
})();
