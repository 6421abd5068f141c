"""The speech-engine library shared by asr (first pass) and corrector (second pass).

What both services do alike lives here: faster-whisper model loading behind one lock and one decode at a
time (:mod:`relisten_speech.whisper`), the bundled Whisper models (:mod:`relisten_speech.models`), the
settings of a speech model (:mod:`relisten_speech.settings`), the OpenAI-compatible transcription client
and its ``verbose_json`` words (:mod:`relisten_speech.remote`, :mod:`relisten_speech.verbose_json`), and
the vLLM chat client for audio chat models (:mod:`relisten_speech.chat`, :mod:`relisten_speech.cleaning`).
What each pass makes of the model's answer (VAD, recovery, hallucination screening and language routing
in asr; packing clips into windows and handing words back to clips in the corrector) stays in the service.

Every failure is a :class:`~relisten_speech.errors.SpeechError` with a short stable code.
"""
