import numpy as np
import pytest
import soundfile as sf

from models.signal.audio import Audio, LoadConfig, load_audio, peak_normalise, resample, save_wav
from models.errors import (AudioFileError, CorruptAudioError, EmptyAudioError, SilentAudioError,
                           TooShortAudioError, UserError)
from models.signal.pitch import estimate_pitch
from models.signal.tones import additive_tone

SR = 16000


def sine(freq_hz: float, rate: int, duration_s: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(duration_s * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def tone_at(freq_hz: float, wave: np.ndarray, rate: int) -> tuple[float, float]:
    """(frequency of the strongest bin, amplitude of that sinusoid) of ``wave``, edges skipped."""
    mid = wave[rate // 8: -rate // 8].astype(np.float64)
    spec = np.abs(np.fft.rfft(mid * np.hanning(mid.size)))
    freqs = np.fft.rfftfreq(mid.size, 1 / rate)
    k = int(np.argmax(spec))
    # Quadratic interpolation on the log spectrum: the peak between bins.
    a, b, c = np.log(spec[k - 1: k + 2] + 1e-30)
    shift = 0.5 * (a - c) / (a - 2 * b + c)
    amp = np.sqrt(2 * np.mean(mid ** 2))
    return freqs[k] + shift * rate / mid.size, amp


# --- bad files: each raises its own error -------------------------------------------------

def write_bytes(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def good_wav_bytes(tmp_path) -> bytes:
    path = tmp_path / "good.wav"
    sf.write(path, sine(440, SR), SR, subtype="PCM_16")
    return path.read_bytes()


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(AudioFileError, match="no such file") as info:
        load_audio(tmp_path / "nope.wav", SR)
    assert "nope.wav" in str(info.value)
    assert isinstance(info.value, UserError)
    with pytest.raises(AudioFileError, match="not a file"):
        load_audio(tmp_path, SR)


def test_empty_file(tmp_path):
    with pytest.raises(EmptyAudioError, match="0 bytes"):
        load_audio(write_bytes(tmp_path, "empty.wav", b""), SR)


def test_zero_length_wav(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), SR)
    with pytest.raises(EmptyAudioError):
        load_audio(path, SR)


def test_text_file_renamed_wav(tmp_path):
    path = write_bytes(tmp_path, "notes.wav", b"just some text, not audio\n" * 20)
    with pytest.raises(CorruptAudioError, match="not an audio file"):
        load_audio(path, SR)


@pytest.mark.parametrize("cut", [20, 44, 1000, -1])
def test_truncated_wav(tmp_path, cut):
    data = good_wav_bytes(tmp_path)  # header 44 bytes, then 32,000 bytes of samples
    with pytest.raises(CorruptAudioError):
        load_audio(write_bytes(tmp_path, "cut.wav", data[:cut]), SR)


def test_truncated_flac(tmp_path):
    path = tmp_path / "good.flac"
    sf.write(path, sine(440, SR, 2.0), SR, format="FLAC")
    data = path.read_bytes()
    with pytest.raises(CorruptAudioError):
        load_audio(write_bytes(tmp_path, "cut.flac", data[: len(data) // 2]), SR)


def test_silent_wav(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(SR, np.float32), SR, subtype="PCM_16")
    with pytest.raises(SilentAudioError):
        load_audio(path, SR)
    rng = np.random.default_rng(0)
    sf.write(path, (2e-4 * rng.standard_normal(SR)).astype(np.float32), SR, subtype="FLOAT")  # -74 dBFS hiss
    with pytest.raises(SilentAudioError):
        load_audio(path, SR)


def test_click_is_too_short(tmp_path):
    wave = np.zeros(SR, np.float32)
    wave[4000: 4000 + int(0.02 * SR)] = sine(1000, SR, 0.02, 0.9)  # a 20 ms click in a second of silence
    path = tmp_path / "click.wav"
    sf.write(path, wave, SR)
    with pytest.raises(TooShortAudioError, match="20 ms"):
        load_audio(path, SR)


def test_nan_samples(tmp_path):
    wave = sine(440, SR)
    wave[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    with pytest.raises(CorruptAudioError, match="NaN"):
        load_audio(path, SR)


# --- resampling -------------------------------------------------------------------------------

@pytest.mark.parametrize("src", [8000, 22050, 44100, 48000, 96000, 192000, 44056])
def test_resample_keeps_frequency_and_amplitude(src):
    for freq in (440.0, 3000.0, 7000.0):
        if freq >= 0.45 * src:
            continue
        out = resample(Audio(sine(freq, src), src), SR)
        assert out.sample_rate == SR
        assert abs(out.num_samples - SR) <= 1
        got_freq, got_amp = tone_at(freq, out.samples, SR)
        assert abs(got_freq - freq) < 0.5, (src, freq, got_freq)
        assert abs(got_amp - 0.5) < 0.005, (src, freq, got_amp)  # within 0.1 dB


@pytest.mark.parametrize("src", [44100, 48000, 96000])
def test_resample_rejects_what_would_alias(src):
    out = resample(Audio(sine(11000, src), src), SR).samples  # above the new Nyquist (8 kHz)
    assert np.sqrt(2 * np.mean(out[SR // 8: -SR // 8] ** 2)) < 5e-4  # below -60 dB of the input


def test_resample_is_identity_at_the_same_rate_and_keeps_channels():
    audio = Audio(sine(440, SR), SR)
    assert resample(audio, SR) is audio
    stereo = Audio(np.stack([sine(440, 44100), sine(880, 44100)]), 44100)
    out = resample(stereo, SR)
    assert out.samples.shape == (2, SR)


# --- formats and channels ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"),
                                         ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("AIFF", "PCM_16")])
def test_formats_load_to_model_rate_with_pitch_intact(tmp_path, fmt, subtype):
    rate = 44100
    wave = additive_tone(57, sample_rate=rate, duration_s=1.0)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, 0.3 * wave, rate, format=fmt, subtype=subtype)
    audio = load_audio(path, SR)
    assert audio.sample_rate == SR and audio.is_mono and audio.samples.dtype == np.float32
    assert abs(float(np.abs(audio.samples).max()) - 1.0) < 1e-6
    assert abs(audio.num_samples - SR) < 0.02 * SR
    assert abs(estimate_pitch(audio).midi - 57) < 0.1


def test_stereo_downmix_and_opposite_phase(tmp_path):
    rate = 48000
    left, right = sine(440, rate), sine(660, rate, amp=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), rate, subtype="PCM_24")
    mixed = load_audio(path, SR)
    assert tone_at(440, mixed.samples, SR)[0] == pytest.approx(440, abs=0.5)
    spec = np.abs(np.fft.rfft(mixed.samples))
    freqs = np.fft.rfftfreq(mixed.num_samples, 1 / SR)
    assert spec[np.argmin(abs(freqs - 660))] > 0.2 * spec[np.argmin(abs(freqs - 440))]  # both channels heard
    # Opposite phase: the plain mean is silence, the loader keeps the sound.
    sf.write(path, np.stack([left, -left], axis=1), rate, subtype="PCM_24")
    anti = load_audio(path, SR)
    assert tone_at(440, anti.samples, SR)[0] == pytest.approx(440, abs=0.5)
    assert abs(float(np.abs(anti.samples).max()) - 1.0) < 1e-6


def test_many_channels(tmp_path):
    chans = np.stack([sine(440, SR, amp=0.1 * (c + 1)) for c in range(6)], axis=1)
    path = tmp_path / "surround.wav"
    sf.write(path, chans, SR, subtype="PCM_16")
    audio = load_audio(path, SR)
    assert audio.is_mono and abs(estimate_pitch(audio).midi - 69) < 0.05


# --- trimming, capping, normalising -----------------------------------------------------------

def test_leading_silence_trimmed_and_length_capped(tmp_path):
    rate = 22050
    wave = np.concatenate([np.zeros(rate, np.float32), sine(440, rate, 6.0, 0.2)])
    path = tmp_path / "long.wav"
    sf.write(path, wave, rate, subtype="FLOAT")
    audio = load_audio(path, SR, max_duration_s=2.0)
    assert audio.num_samples == 2 * SR
    pre_roll = int(LoadConfig().pre_roll_s * SR)
    assert np.abs(audio.samples[: pre_roll - 2]).max() < 0.01  # the pre-roll, then the sound
    assert np.abs(audio.samples[pre_roll + 40: pre_roll + 80]).max() > 0.9
    assert abs(audio.samples[-1]) < 1e-3  # faded at the cut
    default = load_audio(path, SR)
    assert default.num_samples == 4 * SR


def test_short_sounds_are_kept_whole(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, sine(440, SR, 0.3, 0.05), SR)
    audio = load_audio(path, SR)
    assert abs(audio.num_samples - int(0.3 * SR)) <= int(LoadConfig().pre_roll_s * SR) + 1
    assert abs(float(np.abs(audio.samples).max()) - 1.0) < 1e-6


def test_peak_normalise_and_save_wav_round_trip(tmp_path):
    wave = sine(440, SR, amp=0.25)
    assert abs(np.abs(peak_normalise(wave, 0.5)).max() - 0.5) < 1e-6
    assert wave.max() <= 0.25  # the caller's array is untouched
    assert not peak_normalise(np.zeros(10, np.float32)).any()
    for subtype, tol in (("PCM_16", 1e-4), ("PCM_24", 1e-6), ("FLOAT", 0.0)):
        path = save_wav(tmp_path / f"x_{subtype}.wav", Audio(wave, SR), subtype)
        back, rate = sf.read(path, dtype="float32")
        assert rate == SR and np.abs(back - wave).max() <= tol
    assert not list(tmp_path.glob("*.tmp"))
