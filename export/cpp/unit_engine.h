// unit_engine.h - UNIT Trainer's real-time engine: the exported twin as plain C++17.
//
// Header-only, standard library only. It computes the same math as the Python twin
// (dsp/twin.py, FittedBlock.render: the exact recursive path) from a "unit-model" v1
// document (model.json, written by dsp/export.py):
//
//   knob settings --(knob map: per-knob curves/tables + interaction MLP + squash)-->
//   physical DSP controls (Hz, dB, fractions) --(bilinear designs at the RUNNING rate)-->
//   filter coefficients --> the topology's signal flow (drive, amp, eq_match), blocks
//   in series.
//
// Model loading: the engine parses model.json text ONCE at start-up (Engine::fromJson /
// Engine::fromFile), never in process(). The exporter also writes unit_model_data.h,
// which embeds that same text, so a plugin needs no file at run time:
//     auto engine = unit::Engine::fromJson(unit_model::json());
// One loader, one code path: a model swapped on disk and the embedded one behave alike.
//
// Real-time rules: process() does no allocation, no locks, no I/O, no exceptions. All
// buffers are fixed-size members. setKnob() only writes a target value (atomic-free:
// call it from the audio thread, e.g. from the host's parameter callbacks at the start
// of a block); coefficients are recomputed inside process() at control rate (every
// kChunk = 32 samples) while a knob moves.
//
// Smoothing: knob values glide towards their targets with a one-pole of time constant
// setSmoothingTime() (default 20 ms); switches jump. setSmoothing(false) applies every
// setKnob() at the next sample (what the parity tests use); knobs set before prepare()
// never glide.
//
// Latency: oversampled blocks resample with a causal linear-phase FIR read from
// model.json (the twin applies the same FIR zero-phase), so the output is the twin's
// output delayed by latencySamples() samples: (taps - 1) / factor per oversampled block,
// 20 with the default half-band FIR (dsp.shapers.oversampling_fir, 41 taps at 2x). The
// dry path of the drive is delayed by the same amount, so nothing else changes. The two
// agree exactly on inputs that start and end in silence (the twin's zero-phase filter
// drops the ringing before t = 0 that a causal one keeps); the goldens are made so.
//
// Denormals: process() sets flush-to-zero / denormals-are-zero on x86 (MXCSR) and
// AArch64 (FPCR.FZ) for its duration and restores the caller's mode on return.
//
// Numbers: recursive filters, gains and shapers run in double (filters with low cut-offs
// need it to reach the twin's output to better than -80 dB); the oversampling FIR runs
// in float with 4-wide SIMD (polyphase, zero taps skipped), and the drive's soft clip
// uses polynomial log2/exp2 (relative error < 1e-6): measured parity with the twin is
// ESR ~1e-12 (the float32 output's own rounding), up to ~2e-11 under a narrow, strong
// drive mid peak (+21 dB, Q 3): the twin evaluates its knob map in float32, and such a
// peak is sensitive to that rounding of its controls (with the twin's map in float64 the
// same case gives 5e-15). Samples are float at the interface.
//
// Cost (benchmarks/cpu_engine.py, -O3 -march=x86-64-v2, 2x oversampling on), in
// instructions per sample: drive ~376 (g++ 12) / ~381 (clang 14), amp ~628 / ~719.
// Of the drive's: soft clip ~150 (two high-rate samples), recursive filters ~97 (three
// first-order, three biquads), the half-band resampler (up + down) ~70. While a knob is
// automated (smoothing on): drive ~578, amp ~1092 (g++).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <locale>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#if defined(__SSE__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 1)
#include <xmmintrin.h>
#define UNIT_ENGINE_X86_FTZ 1
#endif

namespace unit {

constexpr int kModelFormatVersion = 1;  // the "unit-model" schema version this reads
constexpr int kChunk = 32;               // control-rate period (samples at the base rate)
constexpr int kMaxOversample = 8;

// ======================================================================================
// Minimal JSON (start-up only; allocation is fine here)
// ======================================================================================
namespace json {

struct Value {
    enum Type { Null, Bool, Number, String, Array, Object };
    Type type = Null;
    bool boolean = false;
    double number = 0.0;
    std::string string;
    std::vector<Value> items;        // Array elements / Object values
    std::vector<std::string> keys;   // Object keys (same order as items)

    bool isNull() const { return type == Null; }
    bool has(const std::string& k) const {
        return type == Object && std::find(keys.begin(), keys.end(), k) != keys.end();
    }
    const Value& operator[](const std::string& k) const {
        if (type == Object)
            for (size_t i = 0; i < keys.size(); ++i)
                if (keys[i] == k) return items[i];
        throw std::runtime_error("unit-model: missing key '" + k + "'");
    }
    const Value& operator[](size_t i) const {
        if (type != Array || i >= items.size()) throw std::runtime_error("unit-model: bad index");
        return items[i];
    }
    size_t size() const { return items.size(); }
    double num() const {
        if (type != Number) throw std::runtime_error("unit-model: expected a number");
        return number;
    }
    const std::string& str() const {
        if (type != String) throw std::runtime_error("unit-model: expected a string");
        return string;
    }
    std::vector<double> nums() const {
        std::vector<double> v;
        for (auto& it : items) v.push_back(it.num());
        return v;
    }
};

class Parser {
public:
    explicit Parser(const std::string& s) : s_(s) {}
    Value parse() {
        Value v = value();
        ws();
        if (p_ != s_.size()) fail("trailing characters");
        return v;
    }

private:
    const std::string& s_;
    size_t p_ = 0;
    [[noreturn]] void fail(const char* what) {
        throw std::runtime_error(std::string("unit-model JSON: ") + what + " at offset " +
                                 std::to_string(p_));
    }
    void ws() {
        while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\n' || s_[p_] == '\r' || s_[p_] == '\t')) ++p_;
    }
    bool lit(const char* w) {
        size_t n = std::strlen(w);
        if (s_.compare(p_, n, w) == 0) { p_ += n; return true; }
        return false;
    }
    Value value() {
        ws();
        if (p_ >= s_.size()) fail("unexpected end");
        Value v;
        char c = s_[p_];
        if (c == '{') {
            v.type = Value::Object; ++p_; ws();
            if (p_ < s_.size() && s_[p_] == '}') { ++p_; return v; }
            for (;;) {
                ws();
                if (p_ >= s_.size() || s_[p_] != '"') fail("expected a key");
                v.keys.push_back(str());
                ws();
                if (p_ >= s_.size() || s_[p_] != ':') fail("expected ':'");
                ++p_;
                v.items.push_back(value());
                ws();
                if (p_ < s_.size() && s_[p_] == ',') { ++p_; continue; }
                if (p_ < s_.size() && s_[p_] == '}') { ++p_; return v; }
                fail("expected ',' or '}'");
            }
        }
        if (c == '[') {
            v.type = Value::Array; ++p_; ws();
            if (p_ < s_.size() && s_[p_] == ']') { ++p_; return v; }
            for (;;) {
                v.items.push_back(value());
                ws();
                if (p_ < s_.size() && s_[p_] == ',') { ++p_; continue; }
                if (p_ < s_.size() && s_[p_] == ']') { ++p_; return v; }
                fail("expected ',' or ']'");
            }
        }
        if (c == '"') { v.type = Value::String; v.string = str(); return v; }
        if (lit("true")) { v.type = Value::Bool; v.boolean = true; return v; }
        if (lit("false")) { v.type = Value::Bool; return v; }
        if (lit("null")) return v;
        if (lit("NaN")) { v.type = Value::Number; v.number = std::nan(""); return v; }
        if (lit("Infinity")) { v.type = Value::Number; v.number = HUGE_VAL; return v; }
        if (lit("-Infinity")) { v.type = Value::Number; v.number = -HUGE_VAL; return v; }
        size_t q = p_;
        while (q < s_.size() && (std::isdigit((unsigned char)s_[q]) || s_[q] == '-' || s_[q] == '+' ||
                                 s_[q] == '.' || s_[q] == 'e' || s_[q] == 'E')) ++q;
        if (q == p_) fail("unexpected character");
        std::istringstream is(s_.substr(p_, q - p_));
        is.imbue(std::locale::classic());  // '.' whatever the host's locale
        is >> v.number;
        if (is.fail()) fail("bad number");
        v.type = Value::Number;
        p_ = q;
        return v;
    }
    std::string str() {
        ++p_;  // opening quote
        std::string out;
        while (p_ < s_.size() && s_[p_] != '"') {
            char c = s_[p_++];
            if (c != '\\') { out += c; continue; }
            if (p_ >= s_.size()) fail("bad escape");
            char e = s_[p_++];
            switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'u': {
                    if (p_ + 4 > s_.size()) fail("bad \\u escape");
                    unsigned cp = (unsigned)std::stoul(s_.substr(p_, 4), nullptr, 16);
                    p_ += 4;
                    if (cp >= 0xD800 && cp < 0xDC00 && p_ + 6 <= s_.size() && s_[p_] == '\\' && s_[p_ + 1] == 'u') {
                        unsigned lo = (unsigned)std::stoul(s_.substr(p_ + 2, 4), nullptr, 16);
                        p_ += 6;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    if (cp < 0x80) out += (char)cp;
                    else if (cp < 0x800) { out += (char)(0xC0 | (cp >> 6)); out += (char)(0x80 | (cp & 63)); }
                    else if (cp < 0x10000) {
                        out += (char)(0xE0 | (cp >> 12)); out += (char)(0x80 | ((cp >> 6) & 63));
                        out += (char)(0x80 | (cp & 63));
                    } else {
                        out += (char)(0xF0 | (cp >> 18)); out += (char)(0x80 | ((cp >> 12) & 63));
                        out += (char)(0x80 | ((cp >> 6) & 63)); out += (char)(0x80 | (cp & 63));
                    }
                    break;
                }
                default: out += e;
            }
        }
        if (p_ >= s_.size()) fail("unterminated string");
        ++p_;
        return out;
    }
};

inline Value parse(const std::string& text) { return Parser(text).parse(); }

}  // namespace json

// ======================================================================================
// DSP primitives (double precision; formulas = dsp/filters.py, dsp/shapers.py)
// ======================================================================================
namespace dsp {

constexpr double kPi = 3.14159265358979323846;

inline double dbToGain(double db) { return std::pow(10.0, db / 20.0); }

/// tan(pi f / fs), the bilinear pre-warp. A cut-off at or above Nyquist (possible at
/// 44.1 kHz for controls whose range reaches 23 kHz) has no valid bilinear design; the
/// twin's formula would give an unstable filter there, the engine uses 0.4999 fs.
inline double prewarp(double cutoffHz, double fs) {
    if (!(cutoffHz < 0.5 * fs)) cutoffHz = 0.4999 * fs;
    return std::tan(kPi * cutoffHz / fs);
}

/// First- or second-order section, transposed direct form II (as scipy.signal.lfilter).
struct Section {
    double b0 = 1, b1 = 0, b2 = 0, a1 = 0, a2 = 0;
    double s1 = 0, s2 = 0;
    inline double tick(double x) {
        double y = b0 * x + s1;
        s1 = b1 * x - a1 * y + s2;
        s2 = b2 * x - a2 * y;
        return y;
    }
    /// The same section when it is first order (dsp::onepole: b2 == a2 == 0, s2 stays
    /// 0): the same numbers with 3 multiplies instead of 5.
    inline double tick1(double x) {
        double y = b0 * x + s1;
        s1 = b1 * x - a1 * y;
        return y;
    }
    /// The same section when it is an RBJ all-pass, whose design gives b0 == a2,
    /// b1 == a1 and b2 == 1 exactly: 3 multiplies instead of 5.
    inline double tickAllpass(double x) {
        double y = a2 * x + s1;
        s1 = a1 * (x - y) + s2;
        s2 = x - a2 * y;
        return y;
    }
    void reset() { s1 = s2 = 0; }
    void flushDenormals() {
        if (std::fabs(s1) < 1e-30) s1 = 0;
        if (std::fabs(s2) < 1e-30) s2 = 0;
    }
};

/// Bilinear one-pole, pre-warped (dsp.filters.onepole_coeffs): K = tan(pi f / fs), the
/// cut-off taken as at most 0.498 fs (ONEPOLE_MAX_FRACTION: a low-pass that opens fully).
inline void onepole(Section& s, bool highpass, double fs, double cutoffHz) {
    double k = prewarp(std::min(cutoffHz, 0.498 * fs), fs), norm = 1.0 + k;
    s.a1 = (k - 1.0) / norm;
    s.a2 = 0;
    s.b2 = 0;
    if (highpass) { s.b0 = 1.0 / norm; s.b1 = -1.0 / norm; }
    else { s.b0 = k / norm; s.b1 = k / norm; }
}

enum class BiquadKind { Lowpass, Highpass, Bandpass, Peak, Lowshelf, Highshelf, Allpass };

/// RBJ-cookbook biquad by the pre-warped bilinear transform (dsp.filters.biquad_coeffs).
inline void biquad(Section& s, BiquadKind kind, double fs, double f0, double q, double gainDb) {
    double k = prewarp(f0, fs);
    // analog prototype (B0 + B1 s + B2 s^2) / (A0 + A1 s + A2 s^2), s normalised
    const double amp = std::pow(10.0, gainDb / 40.0), sq = std::sqrt(amp) / q;
    double B0 = 1, B1 = 0, B2 = 0, A0 = 1, A1 = 1.0 / q, A2 = 1;  // lowpass
    switch (kind) {
        case BiquadKind::Lowpass: break;
        case BiquadKind::Highpass: B0 = 0; B2 = 1; break;
        case BiquadKind::Bandpass: B0 = 0; B1 = 1.0 / q; break;
        case BiquadKind::Peak: B1 = amp / q; B2 = 1; A1 = 1.0 / (amp * q); break;
        case BiquadKind::Lowshelf: B0 = amp * amp; B1 = amp * sq; B2 = amp; A1 = sq; A2 = amp; break;
        case BiquadKind::Highshelf: B0 = amp; B1 = amp * sq; B2 = amp * amp; A0 = amp; A1 = sq; break;
        case BiquadKind::Allpass: B1 = -1.0 / q; B2 = 1; break;
    }
    double k2 = k * k;
    double n0 = A2 + A1 * k + A0 * k2;
    s.b0 = (B2 + B1 * k + B0 * k2) / n0;
    s.b1 = 2.0 * (B0 * k2 - B2) / n0;
    s.b2 = (B2 - B1 * k + B0 * k2) / n0;
    s.a1 = 2.0 * (A0 * k2 - A2) / n0;
    s.a2 = (A2 - A1 * k + A0 * k2) / n0;
}

/// Section of order N, transposed direct form II (the tone stack: N = 3; fused chains
/// of fixed sections, see ``cascade``).
template <int N>
struct SectionN {
    double b[N + 1] = {1}, a[N + 1] = {1};
    double s[N] = {};
    inline double tick(double x) {
        const double y = b[0] * x + s[0];
        for (int k = 0; k < N - 1; ++k) s[k] = b[k + 1] * x - a[k + 1] * y + s[k + 1];
        s[N - 1] = b[N] * x - a[N] * y;
        return y;
    }
    void reset() {
        for (double& v : s) v = 0;
    }
    /// All states at once or none: flushing some of a fused section's states (they are
    /// larger than its output) re-excites it, measured as a floor near 1e-29 that never
    /// decayed.
    void flushDenormals() {
        double m = 0;
        for (double v : s) m = std::max(m, std::fabs(v));
        if (m < 1e-30) reset();
    }
};
using Section3 = SectionN<3>;

/// ``out`` = the sections in series as one: the products of their numerators and of
/// their denominators (the same filter; one state update instead of several per
/// sample). Orders must add up to N; first-order sections are Sections with b2 = a2 = 0.
template <int N>
inline void cascade(SectionN<N>& out, std::initializer_list<const Section*> parts) {
    double b[N + 1] = {1}, a[N + 1] = {1};
    int order = 0;
    for (const Section* p : parts) {
        const int o = (p->b2 == 0.0 && p->a2 == 0.0) ? 1 : 2;
        const double pb[3] = {p->b0, p->b1, p->b2}, pa[3] = {1.0, p->a1, p->a2};
        double nb[N + 1] = {}, na[N + 1] = {};
        for (int i = 0; i <= order; ++i)
            for (int j = 0; j <= o && i + j <= N; ++j) {
                nb[i + j] += b[i] * pb[j];
                na[i + j] += a[i] * pa[j];
            }
        order += o;
        std::copy(nb, nb + N + 1, b);
        std::copy(na, na + N + 1, a);
    }
    std::copy(b, b + N + 1, out.b);
    std::copy(a, a + N + 1, out.a);
}

/// dsp.shapers.table_shaper: linear interpolation in K values on a uniform grid over
/// [-range, range], the end values beyond it (the same operations in the same order).
template <int K>
inline double tableShaper(const double* v, double x, double range) {
    const double h = 2.0 * range / (K - 1);
    const double u = (std::min(std::max(x, -range), range) + range) / h;
    const double jf = std::min(std::max(std::floor(u), 0.0), (double)(K - 2));
    const double f = u - jf;
    const int j = (int)jf;
    return v[j] + f * (v[j + 1] - v[j]);
}

/// The blend tone (1 - t) LP1(lpHz) + t HP1(hpHz) as one second-order section: the two
/// one-poles over their common denominator (the same filter as the sum).
inline void blend(Section& out, double fs, double t, double lpHz, double hpHz) {
    Section lo, hi;
    onepole(lo, false, fs, lpHz);
    onepole(hi, true, fs, hpHz);
    const double u = 1.0 - t;
    out.b0 = u * lo.b0 + t * hi.b0;
    out.b1 = u * (lo.b1 + lo.b0 * hi.a1) + t * (hi.b1 + hi.b0 * lo.a1);
    out.b2 = u * lo.b1 * hi.a1 + t * hi.b1 * lo.a1;
    out.a1 = lo.a1 + hi.a1;
    out.a2 = lo.a1 * hi.a1;
}

/// 2^x, relative error < 2e-7 (|x| <= 1000): 2^round(x) from the exponent bits times a
/// degree-6 polynomial of e^y, |y| <= ln2/2.
inline double fastExp2(double x) {
    x = std::min(std::max(x, -1000.0), 1000.0);
    const double n = std::nearbyint(x);
    const double y = (x - n) * 0.69314718055994531;
    double p = 1.0 / 720.0;
    p = p * y + 1.0 / 120.0;
    p = p * y + 1.0 / 24.0;
    p = p * y + 1.0 / 6.0;
    p = p * y + 0.5;
    p = p * y + 1.0;
    p = p * y + 1.0;
    const uint64_t bits = (uint64_t)((int64_t)n + 1023) << 52;
    double scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/// log2(m) + e for m in [sqrt(1/2), sqrt(2)]: 2 atanh(s)/ln2, s = (m - 1)/(m + 1),
/// |s| <= 0.1716; absolute error < 5e-8.
inline double log2Reduced(double m, double e) {
    const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double p = 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    p = p * s2 + 1.0;
    return e + 2.8853900817779268 * s * p;  // 2/ln2
}

/// log2(a) for a normal, positive a (absolute error < 5e-8).
inline double fastLog2(double a) {
    uint64_t bits;
    std::memcpy(&bits, &a, sizeof bits);
    int64_t e = (int64_t)((bits >> 52) & 0x7ff) - 1023;
    bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;  // m in [1, 2)
    double m;
    std::memcpy(&m, &bits, sizeof m);
    if (m > 1.4142135623730951) { m *= 0.5; ++e; }
    return log2Reduced(m, (double)e);
}

/// log2(1 + t) for t in [0, 1] (no exponent extraction needed).
inline double fastLog2OnePlus(double t) {
    const double m = 1.0 + t;
    return m > 1.4142135623730951 ? log2Reduced(0.5 * m, 1.0) : log2Reduced(m, 0.0);
}

/// asym_soft_clip (dsp.shapers): y = x / (1 + |x/L|^p)^(1/p), L = pos or neg level.
/// Evaluated as x * 2^-d with d = log2(1 + t)/p (+ log2 a for a > 1), t = a^(+-p) <= 1
/// (no overflow). Relative error < 1e-6: the output differs from the twin's by less
/// than -120 dB, far inside the -80 dB parity bound.
inline double softClip(double x, double posLevel, double negLevel, double p, double invP) {
    const double level = x >= 0 ? posLevel : negLevel;
    const double a = std::fabs(x) / level;
    if (a > 1e12) return x > 0 ? level : -level;
    if (!(a >= 1e-150)) return x;  // (1 + a^p)^(1/p) = 1 to double precision
    const double lg = fastLog2(a);
    if (a <= 1.0) return x * fastExp2(-fastLog2OnePlus(fastExp2(p * lg)) * invP);
    return x * fastExp2(-lg - fastLog2OnePlus(fastExp2(-p * lg)) * invP);
}

#if defined(__GNUC__) || defined(__clang__)
#define UNIT_ENGINE_VEC2 1
/// Two lanes of double (SSE2 / NEON) with GCC/Clang vector extensions: softClip on a
/// pair of oversampled samples at once, branch-free; same formulas as the scalar path.
namespace v2 {
typedef double d2 __attribute__((vector_size(16)));
typedef long long i2 __attribute__((vector_size(16)));
inline d2 splat(double v) { return d2{v, v}; }
inline d2 sel(i2 m, d2 a, d2 b) { return (d2)((m & (i2)a) | (~m & (i2)b)); }
inline d2 exp2(d2 x) {
    x = sel(x < splat(-1000.0), splat(-1000.0), x);
    x = sel(x > splat(1000.0), splat(1000.0), x);
    const d2 t = x + splat(6755399441055744.0);  // 1.5 * 2^52: round to an integer
    const d2 n = t - splat(6755399441055744.0);
    const d2 y = (x - n) * splat(0.69314718055994531);
    d2 p = splat(1.0 / 720.0);
    p = p * y + splat(1.0 / 120.0);
    p = p * y + splat(1.0 / 24.0);
    p = p * y + splat(1.0 / 6.0);
    p = p * y + splat(0.5);
    p = p * y + splat(1.0);
    p = p * y + splat(1.0);
    const i2 bits = ((i2)t + i2{1023, 1023}) << 52;  // n sits in t's low mantissa bits
    return p * (d2)bits;
}
inline d2 log2Reduced(d2 m, d2 e) {
    const d2 s = (m - splat(1.0)) / (m + splat(1.0)), s2 = s * s;
    d2 p = splat(1.0 / 9.0);
    p = p * s2 + splat(1.0 / 7.0);
    p = p * s2 + splat(1.0 / 5.0);
    p = p * s2 + splat(1.0 / 3.0);
    p = p * s2 + splat(1.0);
    return e + splat(2.8853900817779268) * s * p;
}
inline d2 log2(d2 a) {  // a normal, positive
    const i2 bits = (i2)a;
    const i2 k = (bits >> 52) & i2{0x7ff, 0x7ff};
    const d2 e = (d2)(k | (i2)splat(4503599627370496.0)) - splat(4503599627370496.0 + 1023.0);  // 2^52 trick
    d2 m = (d2)((bits & i2{0x000fffffffffffffLL, 0x000fffffffffffffLL}) |
                i2{0x3ff0000000000000LL, 0x3ff0000000000000LL});
    const i2 hi = m > splat(1.4142135623730951);
    return log2Reduced(sel(hi, m * splat(0.5), m), sel(hi, e + splat(1.0), e));
}
inline void softClip(double* xy, double posLevel, double negLevel, double p, double invP) {
    d2 x;
    std::memcpy(&x, xy, sizeof x);
    const d2 level = sel(x >= splat(0.0), splat(posLevel), splat(negLevel));
    d2 a = (d2)((i2)x & i2{0x7fffffffffffffffLL, 0x7fffffffffffffffLL}) / level;
    a = sel(a < splat(1e-300), splat(1e-300), a);
    const d2 lg = log2(a);
    const i2 big = a > splat(1.0);
    const d2 pl = splat(p) * lg;
    const d2 t = exp2(sel(big, -pl, pl));  // a^(+-p) <= 1
    const d2 m = splat(1.0) + t;
    const i2 h = m > splat(1.4142135623730951);
    const d2 l1 = log2Reduced(sel(h, m * splat(0.5), m), sel(h, splat(1.0), splat(0.0)));
    const d2 d = l1 * splat(invP) + sel(big, lg, splat(0.0));
    const d2 y = x * exp2(-d);
    std::memcpy(xy, &y, sizeof y);
}
}  // namespace v2
#endif

/// softClip with p = 2 (knee 1): x / sqrt(1 + (x/L)^2).
inline double softClip2(double x, double posLevel, double negLevel) {
    const double level = x >= 0 ? posLevel : negLevel;
    const double a = std::fabs(x) / level;
    if (a > 1e12) return x > 0 ? level : -level;
    if (a <= 1.0) return x / std::sqrt(1.0 + a * a);
    return x / (a * std::sqrt(1.0 + 1.0 / (a * a)));
}

/// Causal polyphase interpolator / decimator with one linear-phase FIR h (length N,
/// odd, symmetric; centre c = (N - 1) / 2 a multiple of L), run a chunk at a time:
///   up:   v[m] = L * sum_k h[k] u0[m - k]   (u0: u zero-stuffed by L)
///   down: y[n] = sum_k h[k] w[n L - k]
/// Each adds c high-rate samples of delay (c / L base-rate samples).
///
/// Both run as L polyphase components f_p[j] = h[p + j L] at the base rate, on
/// "planes": plane q holds the high-rate samples w[n L + q] of the chunk's base steps n.
///   up:   plane p [n] = sum_j L f_p[j] u[n - j]
///   down: y[n] = sum_j f_0[j] plane 0 [n - j] + sum_{p>=1} sum_j f_p[j] plane L-p [n - 1 - j]
/// The block's nonlinear part works on the planes in between (in time order: for each
/// n, plane 0 .. L-1). Each component keeps only its span of non-zero taps, so the zero
/// taps of an L-th-band FIR (dsp.shapers.oversampling_fir: every L-th tap from the
/// centre is 0) cost nothing: for the default half-band FIR (41 taps, 21 non-zero) a
/// chunk costs 1 + 20 multiply-adds per base-rate sample each way. Every loop runs over
/// 4 consecutive outputs at once (4-wide SIMD with GCC/Clang vector extensions: no
/// horizontal sums, taps pre-broadcast). Symmetry is not exploited: it would halve the
/// multiplies, not the loads and adds. The FIR runs in float: its rounding error
/// (~1e-7 relative) is far below the -80 dB parity bound. No allocation after design().
struct Resampler {
    struct Component {
        int first = 0;      // base-rate delay of its first non-zero tap (window start)
        int count = 0;      // non-zero span (0: an all-zero component)
        size_t offset = 0;  // its taps in taps(), each repeated 4 times (4-aligned)
    };
    int factor = 1;
    int hist = 0;    // samples of history kept before a chunk (the longest reach)
    int stride = 0;  // floats per plane (history + kChunk + slack, a multiple of 4)
    Component upC[kMaxOversample], downC[kMaxOversample];
    std::vector<float> coefStore, inStore, planeStore;

    void design(const std::vector<double>& fir, int L) {
        factor = L;
        const int n = (int)fir.size();
        std::vector<float> taps;  // 4 copies of each tap
        int reach = 0;
        auto place = [&](Component& c, int p, double scale, int shift) {
            int lo = -1, hi = -1;
            for (int j = 0; p + j * L < n; ++j)
                if (fir[(size_t)(p + j * L)] != 0.0) { if (lo < 0) lo = j; hi = j; }
            c = Component();
            if (lo < 0) return;  // contributes nothing
            c.first = lo + shift;
            c.count = hi - lo + 1;
            c.offset = taps.size();
            for (int j = lo; j <= hi; ++j)
                for (int l = 0; l < 4; ++l) taps.push_back((float)(scale * fir[(size_t)(p + j * L)]));
            reach = std::max(reach, c.first + c.count - 1);
        };
        // down: y[n] = sum_p sum_j f_p[j] w[(n - j) L - p]; for p >= 1 that sample is
        // high-rate sample L - p of base step n - j - 1 (one slot further back).
        for (int p = 0; p < L; ++p) place(upC[p], p, (double)L, 0);
        for (int p = 0; p < L; ++p) place(downC[p], p, 1.0, p > 0 ? 1 : 0);
        coefStore.assign(taps.size() + 3, 0.0f);  // + 3: room to align
        std::copy(taps.begin(), taps.end(), coefStore.begin() + (taps4() - coefStore.data()));
        hist = reach;
        stride = (hist + kChunk + 4 + 3) / 4 * 4;  // + 4: outputs are computed 4 at a time
        inStore.assign((size_t)stride, 0.0f);
        planeStore.assign((size_t)stride * (size_t)L, 0.0f);
    }
    void reset() {
        std::fill(inStore.begin(), inStore.end(), 0.0f);
        std::fill(planeStore.begin(), planeStore.end(), 0.0f);
    }
    /// Where the chunk's base-rate input goes: input()[i] = u[i], i < n (input()[-d]: history).
    float* input() { return inStore.data() + hist; }
    /// Plane q of the chunk: plane(q)[i] = w[i L + q], i < n (+ 3 writable slack samples).
    float* plane(int q) { return planeStore.data() + (size_t)q * (size_t)stride + hist; }

    /// input()[0..n) -> plane(0..L-1)[0..n).
    void up(int n) {
        const float* x = input();
        for (int p = 0; p < factor; ++p) fir4(upC[p], x, plane(p), n, false);
    }
    /// plane(0..L-1)[0..n) -> y[0..n) (y: room for n rounded up to 4); then keeps the
    /// history for the next chunk.
    void down(float* y, int n) {
        fir4(downC[0], plane(0), y, n, false);
        for (int p = 1; p < factor; ++p) fir4(downC[p], plane(factor - p), y, n, true);
        shift(inStore.data(), n);
        for (int q = 0; q < factor; ++q) shift(planeStore.data() + (size_t)q * (size_t)stride, n);
    }

private:
    /// The 16-byte aligned start of the (4 times repeated) taps inside coefStore.
    const float* taps4() const {
        const float* p = coefStore.data();
        return p + ((16 - (reinterpret_cast<std::uintptr_t>(p) & 15)) & 15) / sizeof(float);
    }
    /// out[i] (+)= sum_j tap_j * x[i - first - j], i < n rounded up to 4.
    void fir4(const Component& c, const float* x, float* out, int n, bool accumulate) const {
        const float* k = taps4() + c.offset;
        for (int i = 0; i < n; i += 4) {
            const float* xi = x + i - c.first;
#if defined(__GNUC__) || defined(__clang__)
            typedef float f4 __attribute__((vector_size(16)));
            const f4* kv = static_cast<const f4*>(__builtin_assume_aligned(static_cast<const void*>(k), 16));
            auto at = [xi](int j) { f4 v; std::memcpy(&v, xi - j, sizeof v); return v; };
            f4 acc = {0, 0, 0, 0};
            if (accumulate) std::memcpy(&acc, out + i, sizeof acc);
            int j = 0;
            for (; j + 4 <= c.count; j += 4)
                acc += kv[j] * at(j) + kv[j + 1] * at(j + 1) + kv[j + 2] * at(j + 2) + kv[j + 3] * at(j + 3);
            for (; j < c.count; ++j) acc += kv[j] * at(j);
            std::memcpy(out + i, &acc, sizeof acc);
#else
            for (int l = 0; l < 4; ++l) {
                float acc = accumulate ? out[i + l] : 0.0f;
                for (int j = 0; j < c.count; ++j) acc += k[4 * j] * xi[l - j];
                out[i + l] = acc;
            }
#endif
        }
    }
    /// The last `hist` samples before index hist + n become the history.
    void shift(float* buf, int n) const { std::memmove(buf, buf + n, sizeof(float) * (size_t)hist); }
};

/// A gain that glides linearly to a new value over one control period (no zipper noise
/// from control-rate updates). snap: jump at once (first setting, smoothing off).
struct Ramp {
    double value = 1.0, target = 1.0, inc = 0.0;
    int left = 0;
    void set(double t, bool snap) {
        target = t;
        if (snap) { value = t; left = 0; inc = 0; return; }
        left = kChunk;
        inc = (t - value) / kChunk;
    }
    inline double next() {
        if (left > 0) {
            value += inc;
            if (--left == 0) value = target;
        }
        return value;
    }
};

/// Fixed-capacity delay line (latency compensation of dry paths).
struct Delay {
    std::vector<double> buf;
    int pos = 0, len = 0;
    void setLength(int n) { len = n; buf.assign(std::max(1, n), 0.0); pos = 0; }
    void reset() { std::fill(buf.begin(), buf.end(), 0.0); pos = 0; }
    inline double tick(double x) {
        if (len == 0) return x;
        double y = buf[pos];
        buf[pos] = x;
        if (++pos == len) pos = 0;
        return y;
    }
};

/// = dsp.filters.resample_fir: FIR taps designed at `fromRate` carried to `toRate`
/// (Hann-windowed sinc interpolation, half-width 16 samples of the lower rate).
inline std::vector<double> resampleFir(const std::vector<double>& h, double fromRate, double toRate) {
    if (fromRate == toRate) return h;
    const double r = toRate / fromRate, c = std::min(1.0, r), W = 16.0 / c;
    const double pi = 3.14159265358979323846;
    const size_t m = (size_t)std::ceil((double)h.size() * r);
    std::vector<double> out(m, 0.0);
    for (size_t i = 0; i < m; ++i) {
        double acc = 0.0;
        for (size_t k = 0; k < h.size(); ++k) {
            const double u = (double)i / r - (double)k;
            if (std::fabs(u) >= W) continue;
            const double a = pi * c * u;
            const double sinc = a == 0.0 ? 1.0 : std::sin(a) / a;
            acc += h[k] * sinc * 0.5 * (1.0 + std::cos(pi * u / W));
        }
        out[i] = (c / r) * acc;
    }
    return out;
}

/// Causal FIR y[n] = sum_k h[k] x[n - k] (= dsp.filters.fir_filter), in float (the
/// rounding is ~1e-7 of the signal: ESR ~1e-14 against the twin's float64). The
/// history is kept twice over (a mirrored ring), so each output is one contiguous dot
/// product, four taps at a time; the taps are zero-padded to a multiple of 4.
struct Fir {
    std::vector<float> rev, ring;  // taps reversed (padded in front); 2 n history
    size_t n = 0, pos = 0;
    void design(const std::vector<double>& h) {
        n = (h.size() + 3) / 4 * 4;
        rev.assign(n, 0.0f);
        for (size_t k = 0; k < h.size(); ++k) rev[n - 1 - k] = (float)h[k];
        ring.assign(2 * std::max<size_t>(n, 4), 0.0f);
        pos = 0;
    }
    void reset() { std::fill(ring.begin(), ring.end(), 0.0f); pos = 0; }
    inline double tick(double x) {
        const float v = (float)x;
        ring[pos] = v;
        ring[pos + n] = v;
        if (++pos == n) pos = 0;
        const float* a = ring.data() + pos;  // the last n inputs, oldest first
        const float* b = rev.data();
#if defined(__GNUC__) || defined(__clang__)
        typedef float f4 __attribute__((vector_size(16)));
        f4 acc0 = {0, 0, 0, 0}, acc1 = {0, 0, 0, 0};
        auto at = [](const float* p) { f4 r; std::memcpy(&r, p, sizeof r); return r; };
        size_t k = 0;
        for (; k + 8 <= n; k += 8) {
            acc0 += at(a + k) * at(b + k);
            acc1 += at(a + k + 4) * at(b + k + 4);
        }
        if (k < n) acc0 += at(a + k) * at(b + k);
        const f4 acc = acc0 + acc1;
        return (double)((acc[0] + acc[1]) + (acc[2] + acc[3]));
#else
        float s = 0.0f;
        for (size_t k = 0; k < n; ++k) s += a[k] * b[k];
        return (double)s;
#endif
    }
};

}  // namespace dsp

// ======================================================================================
// Knob -> physical control map (= dsp.controls.evaluate_dict)
// ======================================================================================
struct ControlSpec {
    std::string name, unit;
    double minimum = 0, maximum = 1, defaultValue = 0;
    bool logScale = false;
};

struct KnobDef {
    std::string name;
    bool isSwitch = false;
    double minimum = 0, maximum = 10, reference = 5;
    std::vector<double> positions;
};

class KnobMap {
public:
    std::vector<KnobDef> knobs;
    std::vector<ControlSpec> controls;

    void load(const json::Value& m) {
        knobs.clear();
        controls.clear();
        for (auto& k : m["knobs"].items) {
            KnobDef d;
            d.name = k["name"].str();
            d.isSwitch = k["kind"].str() == "switch";
            d.minimum = k["minimum"].num();
            d.maximum = k["maximum"].num();
            d.reference = k["reference"].num();
            if (k.has("positions")) d.positions = k["positions"].nums();
            knobs.push_back(d);
        }
        for (auto& c : m["controls"].items) {
            ControlSpec s;
            s.name = c["name"].str();
            s.unit = c["unit"].str();
            s.minimum = c["minimum"].num();
            s.maximum = c["maximum"].num();
            s.defaultValue = c["default"].num();
            s.logScale = c["scale"].str() == "log";
            controls.push_back(s);
        }
        base_ = m["base_raw"].nums();
        curves_.clear();
        for (size_t k = 0; k < knobs.size(); ++k) {
            const json::Value& cv = m["curves"][k];
            if (cv["knob"].str() != knobs[k].name) throw std::runtime_error("unit-model: curve/knob order");
            Curve c;
            c.table = cv["kind"].str() == "table";
            c.knots = cv["knots"].nums();
            const json::Value& vals = cv["values"];
            for (size_t i = 0; i < vals.keys.size(); ++i) {
                c.control.push_back(controlIndex(vals.keys[i]));
                c.values.push_back(vals.items[i].nums());
            }
            curves_.push_back(c);
        }
        const json::Value& mlp = m["mlp"];
        if (mlp["activation"].str() != "tanh") throw std::runtime_error("unit-model: MLP activation");
        hidden_ = (int)mlp["hidden"].num();
        W1_.clear(); b1_ = mlp["b1"].nums(); W2_.clear(); mask_.clear();
        for (auto& r : mlp["W1"].items) W1_.push_back(r.nums());
        for (auto& r : mlp["W2"].items) W2_.push_back(r.nums());
        for (auto& r : mlp["input_mask"].items) mask_.push_back(r.nums());
        enabled_ = mlp["enabled"].nums();
        if (base_.size() != controls.size() || W2_.size() != controls.size())
            throw std::runtime_error("unit-model: knob map sizes");
        bool ok = W1_.size() == (size_t)hidden_ && b1_.size() == (size_t)hidden_ &&
                  mask_.size() == controls.size() && enabled_.size() == controls.size();
        for (auto& r : W1_) ok = ok && r.size() >= knobs.size();
        for (auto& r : W2_) ok = ok && r.size() == (size_t)hidden_;
        for (auto& r : mask_) ok = ok && r.size() >= knobs.size();
        for (auto& c : curves_) {
            ok = ok && !c.knots.empty();
            for (auto& v : c.values) ok = ok && v.size() == c.knots.size();
        }
        if (!ok) throw std::runtime_error("unit-model: malformed knob map (array sizes)");
        if (controls.size() > kMaxControls || knobs.size() > kMaxKnobs || hidden_ > kMaxHidden)
            throw std::runtime_error("unit-model: more than 64 controls/knobs or 256 hidden units in one block");
        for (size_t k = 0; k < curves_.size(); ++k) {
            Curve& c = curves_[k];
            c.atRef.clear();
            for (size_t i = 0; i < c.control.size(); ++i) c.atRef.push_back(c.at(i, knobs[k].reference));
        }
        groups_.clear();
        for (size_t c = 0; c < controls.size(); ++c) {
            if (!(enabled_[c] > 0) || knobs.empty()) continue;
            bool placed = false;
            for (auto& g : groups_)
                if (mask_[(size_t)g.front()] == mask_[c]) { g.push_back((int)c); placed = true; break; }
            if (!placed) groups_.push_back({(int)c});
        }
    }

    int controlIndex(const std::string& name) const {
        for (size_t i = 0; i < controls.size(); ++i)
            if (controls[i].name == name) return (int)i;
        throw std::runtime_error("unit-model: unknown control '" + name + "'");
    }

    /// knobValues: one per knob (knob units). physical: one per control. Allocation-free.
    void evaluate(const double* knobValues, double* physical) const {
        const size_t C = controls.size(), K = knobs.size();
        double raw[kMaxControls];
        for (size_t c = 0; c < C; ++c) raw[c] = base_[c];
        for (size_t k = 0; k < K; ++k) {
            const Curve& cv = curves_[k];
            const double v = knobValues[k];
            if (v == knobs[k].reference) continue;  // every curve is 0 at the reference
            for (size_t i = 0; i < cv.control.size(); ++i)
                raw[cv.control[i]] += cv.at(i, v) - cv.atRef[i];
        }
        if (K > 0) {
            double xn[kMaxKnobs], xin[kMaxKnobs], h[kMaxHidden];
            for (size_t k = 0; k < K; ++k) {
                double span = knobs[k].maximum - knobs[k].minimum;
                if (span == 0) span = 1.0;
                xn[k] = 2.0 * (knobValues[k] - knobs[k].minimum) / span - 1.0;
            }
            // controls with the same input mask share the hidden layer: computed once
            for (size_t g = 0; g < groups_.size(); ++g) {
                const std::vector<double>& mask = mask_[(size_t)groups_[g].front()];
                for (size_t k = 0; k < K; ++k) xin[k] = xn[k] * mask[k];
                for (int j = 0; j < hidden_; ++j) {
                    double s = b1_[(size_t)j];
                    for (size_t k = 0; k < K; ++k) s += W1_[(size_t)j][k] * xin[k];
                    h[j] = std::tanh(s);
                }
                for (int c : groups_[g]) {
                    double acc = 0;
                    for (int j = 0; j < hidden_; ++j) acc += W2_[(size_t)c][(size_t)j] * h[j];
                    raw[c] += acc;
                }
            }
        }
        for (size_t c = 0; c < C; ++c) {
            const ControlSpec& s = controls[c];
            double lo = s.minimum, hi = s.maximum;
            if (s.logScale) { lo = std::log(lo); hi = std::log(hi); }
            double v = lo + (hi - lo) / (1.0 + std::exp(-raw[c]));
            physical[c] = s.logScale ? std::exp(v) : v;
        }
    }

    static constexpr size_t kMaxControls = 64;
    static constexpr size_t kMaxKnobs = 64;
    static constexpr int kMaxHidden = 256;

private:
    struct Curve {
        bool table = false;
        std::vector<double> knots;
        std::vector<int> control;
        std::vector<std::vector<double>> values;
        std::vector<double> atRef;  // each curve's value at the knob's reference
        double at(size_t i, double v) const {
            const std::vector<double>& f = values[i];
            const size_t n = knots.size();
            if (table) {  // nearest position (first on ties, as numpy.argmin)
                size_t best = 0;
                for (size_t j = 1; j < n; ++j)
                    if (std::fabs(knots[j] - v) < std::fabs(knots[best] - v)) best = j;
                return f[best];
            }
            if (v <= knots[0]) return f[0];
            if (v >= knots[n - 1]) return f[n - 1];
            size_t j = 0;
            while (j + 2 < n && v >= knots[j + 1]) ++j;
            return f[j] + (v - knots[j]) * (f[j + 1] - f[j]) / (knots[j + 1] - knots[j]);
        }
    };
    std::vector<double> base_;
    std::vector<Curve> curves_;
    int hidden_ = 0;
    std::vector<std::vector<double>> W1_, W2_, mask_;
    std::vector<std::vector<int>> groups_;  // enabled MLP controls grouped by input mask
    std::vector<double> b1_, enabled_;
};

// ======================================================================================
// Blocks (topologies). Each processes a chunk of <= kChunk base-rate samples in place.
// ======================================================================================
class Block {
public:
    virtual ~Block() = default;
    std::string name, topology;
    KnobMap map;
    int oversample = 1;
    double polarity = 1.0;
    double sampleRate = 48000.0;
    std::vector<double> fir;  // resampler FIR (oversampled blocks)

    virtual void load(const json::Value& b) {
        name = b["name"].str();
        topology = b["topology"].str();
        oversample = (int)b["oversample"].num();
        polarity = b["polarity"].num();
        map.load(b["knob_map"]);
        if (b.has("resampler") && !b["resampler"].isNull()) fir = b["resampler"]["taps"].nums();
        if (oversample < 1 || oversample > kMaxOversample) throw std::runtime_error("unit-model: oversample");
        if (oversample > 1 && (fir.empty() || (fir.size() - 1) % (2 * (size_t)oversample) != 0))
            throw std::runtime_error("unit-model: resampler taps missing or of a length this engine cannot align");
        for (size_t k = 0; k < fir.size(); ++k)  // linear phase: the latency below assumes it
            if (fir[k] != fir[fir.size() - 1 - k])
                throw std::runtime_error("unit-model: resampler taps are not symmetric");
        loadShared(b["shared"]);
        if (b.has("output_fir") && !b["output_fir"].isNull()) {
            outFirTaps_ = b["output_fir"]["taps"].nums();
            outFirRate_ = b["output_fir"]["sample_rate"].num();
        }
        const json::Value& sh = b["shared"];
        outFirOn_ = sh.has("output_fir") && sh["output_fir"].num() > 0.5;
        if (outFirOn_ && (outFirTaps_.empty() || !(outFirRate_ > 0)))
            throw std::runtime_error("unit-model: block '" + name + "' has its output FIR on but no taps "
                                     "(\"output_fir\": {\"sample_rate\", \"taps\"}); export the model again");
        for (size_t i = 0; i < map.controls.size(); ++i)
            if (map.controls[i].name != expectedControl(i))
                throw std::runtime_error("unit-model: block '" + name + "' control " + std::to_string(i) +
                                         " is '" + map.controls[i].name + "', this engine expects '" +
                                         expectedControl(i) + "' (re-export with a matching engine)");
        if (map.controls.size() != numExpectedControls())
            throw std::runtime_error("unit-model: block '" + name + "' has " + std::to_string(map.controls.size()) +
                                     " controls, this engine expects " + std::to_string(numExpectedControls()) +
                                     " (the model and the engine come from different versions: export the "
                                     "model again with `unit-trainer export`, which writes both)");
    }
    /// Physical controls -> coefficients at the current sample rate (no allocation).
    /// snap: gains jump to the new values (else they glide over one control period).
    void setKnobs(const double* knobValues, bool snap) {
        double phys[KnobMap::kMaxControls];
        map.evaluate(knobValues, phys);
        snap_ = snap;
        setControls(phys);
    }
    virtual void prepare(double sr) {
        sampleRate = sr;
        if (oversample > 1) resampler.design(fir, oversample);
        if (outFirOn_) outFir_.design(dsp::resampleFir(outFirTaps_, outFirRate_, sr));
    }
    virtual void setControls(const double* physical) = 0;
    virtual void process(double* x, int n) = 0;
    virtual void reset() {
        resampler.reset(); ap1_.reset(); ap2_.reset(); ap3_.reset(); ap4_.reset(); olp1_.reset(); olp2_.reset();
        outFir_.reset();
    }
    virtual void flushDenormals() {}
    /// Base-rate samples of delay behind the twin's (zero-phase) output.
    virtual int latency() const { return oversample > 1 ? ((int)fir.size() - 1) / oversample : 0; }

protected:
    dsp::Resampler resampler;
    bool snap_ = true;
    virtual void loadShared(const json::Value&) {}

    // Optional output sections (dsp.topologies.Topology.OUTPUT_LP / ALLPASS), at the base
    // rate after everything else: two RBJ low-passes, on when shared "output_lp" is 1,
    // then two RBJ all-passes, on when shared "allpass" is 1, then two more (the amp's),
    // on when shared "allpass2" is 1 (a model without the keys has them off).
    bool allpassOn_ = false, allpass2On_ = false, outLpOn_ = false;
    dsp::Section ap1_, ap2_, ap3_, ap4_, olp1_, olp2_;
    // the output FIR (Topology.OUTPUT_FIR), after everything else, on when shared
    // "output_fir" is 1: its taps at outFirRate_, resampled to the running rate in prepare
    bool outFirOn_ = false;
    std::vector<double> outFirTaps_;
    double outFirRate_ = 0.0;
    dsp::Fir outFir_;
    void loadOutputSections(const json::Value& sh) {
        allpassOn_ = sh.has("allpass") && sh["allpass"].num() > 0.5;
        allpass2On_ = sh.has("allpass2") && sh["allpass2"].num() > 0.5;
        outLpOn_ = sh.has("output_lp") && sh["output_lp"].num() > 0.5;
    }
    void setAllpass2(const double* c, int i) {
        dsp::biquad(ap3_, dsp::BiquadKind::Allpass, sampleRate, c[i], c[i + 1], 0.0);
        dsp::biquad(ap4_, dsp::BiquadKind::Allpass, sampleRate, c[i + 2], c[i + 3], 0.0);
    }
    void setAllpass(const double* c, int i) {
        dsp::biquad(ap1_, dsp::BiquadKind::Allpass, sampleRate, c[i], c[i + 1], 0.0);
        dsp::biquad(ap2_, dsp::BiquadKind::Allpass, sampleRate, c[i + 2], c[i + 3], 0.0);
    }
    void setOutputLp(const double* c, int i) {
        dsp::biquad(olp1_, dsp::BiquadKind::Lowpass, sampleRate, c[i], c[i + 1], 0.0);
        dsp::biquad(olp2_, dsp::BiquadKind::Lowpass, sampleRate, c[i + 2], c[i + 3], 0.0);
    }
    /// One base-rate sample through the optional output sections.
    inline double outputSections(double v) {
        if (outLpOn_) v = olp2_.tick(olp1_.tick(v));
        if (allpassOn_) v = ap2_.tickAllpass(ap1_.tickAllpass(v));
        return v;
    }
    /// A chunk through the optional output sections, the second all-pass pair and the
    /// output FIR last (a block that calls the one-sample form has neither).
    void outputSections(double* x, int n) {
        if (outLpOn_ || allpassOn_)
            for (int i = 0; i < n; ++i) x[i] = outputSections(x[i]);
        if (allpass2On_)
            for (int i = 0; i < n; ++i) x[i] = ap4_.tickAllpass(ap3_.tickAllpass(x[i]));
        if (outFirOn_)
            for (int i = 0; i < n; ++i) x[i] = outFir_.tick(x[i]);
    }
    virtual std::string expectedControl(size_t i) const = 0;
    virtual size_t numExpectedControls() const = 0;
};

// -------------------------------------------------------------------------- drive
// = dsp.topologies.DriveTopology (see its docstring for the signal flow):
//   x -> HP1(input_hp) -> LP1(gain_lp) [-> HP2(input_hp2, input_hp2_q)] -> *pre -> up -> soft clip -> down
//     -> + dry_mix * x (delayed by the latency) -> HP1(5 Hz) -> LP2(tone_lp, tone_lp_q)
//     -> HS(tone_shelf_hz, 0.7071, tone_shelf_db) -> peak(tone_mid_hz, tone_mid_q, tone_mid_db)
//     -> *level [-> (1 - tone_blend) LP1(blend_lp) + tone_blend HP1(blend_hp)] [-> all-pass x2]
class DriveBlock final : public Block {
public:
    enum { INPUT_HP, PRE_GAIN, GAIN_LP, CLIP_ASYM, CLIP_KNEE, DRY_MIX, TONE_LP, SHELF_HZ, SHELF_DB, MID_HZ,
           MID_DB, MID_Q, LEVEL, AP1_HZ, AP1_Q, AP2_HZ, AP2_Q, TONE_LP_Q, HP2_HZ, HP2_Q, BLEND, BLEND_LP,
           BLEND_HP, N };
    std::string expectedControl(size_t i) const override {
        static const char* names[N] = {"input_hp_hz", "pre_gain_db", "gain_lp_hz", "clip_asym", "clip_knee",
                                       "dry_mix", "tone_lp_hz", "tone_shelf_hz", "tone_shelf_db", "tone_mid_hz",
                                       "tone_mid_db", "tone_mid_q", "level_db", "ap1_hz", "ap1_q", "ap2_hz",
                                       "ap2_q", "tone_lp_q", "input_hp2_hz", "input_hp2_q", "tone_blend",
                                       "blend_lp_hz", "blend_hp_hz"};
        return i < N ? names[i] : "";
    }
    size_t numExpectedControls() const override { return N; }
    void loadShared(const json::Value& sh) override {
        loadOutputSections(sh);
        hp2On_ = sh.has("input_hp2") && sh["input_hp2"].num() > 0.5;
        blendOn_ = sh.has("blend_tone") && sh["blend_tone"].num() > 0.5;
    }

    void prepare(double sr) override {
        Block::prepare(sr);
        dry_.setLength(latency());
    }
    void setControls(const double* c) override {
        const double fs = sampleRate;
        dsp::onepole(hp_, true, fs, c[INPUT_HP]);
        dsp::onepole(lp_, false, fs, c[GAIN_LP]);
        if (hp2On_) {
            dsp::Section hp2;
            dsp::biquad(hp2, dsp::BiquadKind::Highpass, fs, c[HP2_HZ], c[HP2_Q], 0.0);
            dsp::cascade(in4_, {&hp_, &lp_, &hp2});
        } else {
            dsp::cascade(in2_, {&hp_, &lp_});
        }
        preGain_.set(dsp::dbToGain(c[PRE_GAIN]), snap_);
        posLevel_ = std::exp(c[CLIP_ASYM]);
        negLevel_ = std::exp(-c[CLIP_ASYM]);
        p_ = 2.0 * c[CLIP_KNEE];
        invP_ = 1.0 / p_;
        dryMix_.set(c[DRY_MIX], snap_);
        dsp::Section dc, tone, shelf, mid, blend;
        dsp::onepole(dc, true, fs, 5.0);
        dsp::biquad(tone, dsp::BiquadKind::Lowpass, fs, c[TONE_LP], c[TONE_LP_Q], 0.0);
        dsp::biquad(shelf, dsp::BiquadKind::Highshelf, fs, c[SHELF_HZ], 0.7071, c[SHELF_DB]);
        dsp::biquad(mid, dsp::BiquadKind::Peak, fs, c[MID_HZ], c[MID_Q], c[MID_DB]);
        if (blendOn_) {
            dsp::blend(blend, fs, c[BLEND], c[BLEND_LP], c[BLEND_HP]);
            dsp::cascade(dcToneBlend_, {&dc, &tone, &blend});
        } else {
            dsp::cascade(dcTone_, {&dc, &tone});
        }
        dsp::cascade(shelfMid_, {&shelf, &mid});
        outGain_.set(dsp::dbToGain(c[LEVEL]) * polarity, snap_);
        setAllpass(c, AP1_HZ);
    }
    void process(double* x, int n) override {
        if (oversample == 1) {
            for (int i = 0; i < n; ++i) {
                const double u = preGain_.next() * input(x[i]);
                post(x[i], dsp::softClip(u, posLevel_, negLevel_, p_, invP_));
            }
            return;
        }
        // The clipper is memoryless: the chunk goes through stage by stage (input
        // filters -> up -> clip every high-rate sample -> down -> output filters).
        float* u = resampler.input();
        for (int i = 0; i < n; ++i) u[i] = (float)(preGain_.next() * input(x[i]));
        resampler.up(n);
        for (int q = 0; q < oversample; ++q) {
            float* w = resampler.plane(q);
            int i = 0;
#if defined(UNIT_ENGINE_VEC2)
            for (; i < n; i += 2) {  // pairs (the plane has slack for an odd n)
                double v[2] = {w[i], w[i + 1]};
                dsp::v2::softClip(v, posLevel_, negLevel_, p_, invP_);
                w[i] = (float)v[0];
                w[i + 1] = (float)v[1];
            }
#endif
            for (; i < n; ++i) w[i] = (float)dsp::softClip(w[i], posLevel_, negLevel_, p_, invP_);
        }
        float y[kChunk + 4];
        resampler.down(y, n);
        for (int i = 0; i < n; ++i) post(x[i], y[i]);
    }
    void reset() override {
        Block::reset();
        in2_.reset(); in4_.reset(); dcTone_.reset(); dcToneBlend_.reset(); shelfMid_.reset(); dry_.reset();
    }
    void flushDenormals() override {
        in2_.flushDenormals(); in4_.flushDenormals(); dcTone_.flushDenormals();
        dcToneBlend_.flushDenormals(); shelfMid_.flushDenormals();
        ap1_.flushDenormals(); ap2_.flushDenormals();
    }

private:
    /// the input filters before the gain: HP1, LP1 [, HP2] as one section
    inline double input(double x) { return hp2On_ ? in4_.tick(x) : in2_.tick(x); }
    /// dry mix (latency-compensated) and the output filters; x: the input, replaced.
    inline void post(double& x, double clipped) {
        const double z = clipped + dryMix_.next() * dry_.tick(x);
        const double w = blendOn_ ? dcToneBlend_.tick(z) : dcTone_.tick(z);
        x = outputSections(outGain_.next() * shelfMid_.tick(w));
    }
    // The fixed linear sections, fused (dsp::cascade; the same filters as the twin's
    // chain): input HP1 LP1 [HP2]; DC blocker (5 Hz), tone low-pass [, blend tone];
    // tone shelf and mid peak.
    dsp::Section hp_, lp_;
    dsp::SectionN<2> in2_;
    dsp::SectionN<4> in4_, shelfMid_;
    dsp::SectionN<3> dcTone_;
    dsp::SectionN<5> dcToneBlend_;
    dsp::Delay dry_;
    dsp::Ramp preGain_, dryMix_, outGain_;
    double posLevel_ = 1, negLevel_ = 1, p_ = 2, invP_ = 0.5;
    bool hp2On_ = false, blendOn_ = false;
};

// ----------------------------------------------------------------------- eq_match
// = dsp.topologies.EqMatchTopology: HP2 -> low shelf -> 4 peaks -> high shelf -> LP2 -> gain.
class EqMatchBlock final : public Block {
public:
    static constexpr int N = 18;
    std::string expectedControl(size_t i) const override {
        static const char* names[N] = {"hp_hz", "low_shelf_hz", "low_shelf_db",
                                       "peak1_hz", "peak1_db", "peak1_q", "peak2_hz", "peak2_db", "peak2_q",
                                       "peak3_hz", "peak3_db", "peak3_q", "peak4_hz", "peak4_db", "peak4_q",
                                       "high_shelf_hz", "high_shelf_db", "lp_hz"};
        if (i < (size_t)N) return names[i];
        return i == (size_t)N ? "level_db" : "";
    }
    size_t numExpectedControls() const override { return N + 1; }
    void setControls(const double* c) override {
        const double fs = sampleRate;
        using K = dsp::BiquadKind;
        dsp::biquad(s_[0], K::Highpass, fs, c[0], 0.7071, 0.0);
        dsp::biquad(s_[1], K::Lowshelf, fs, c[1], 0.7071, c[2]);
        for (int i = 0; i < 4; ++i) dsp::biquad(s_[2 + i], K::Peak, fs, c[3 + 3 * i], c[5 + 3 * i], c[4 + 3 * i]);
        dsp::biquad(s_[6], K::Highshelf, fs, c[15], 0.7071, c[16]);
        dsp::biquad(s_[7], K::Lowpass, fs, c[17], 0.7071, 0.0);
        gain_.set(dsp::dbToGain(c[18]) * polarity, snap_);
    }
    void process(double* x, int n) override {
        for (int i = 0; i < n; ++i) {
            double v = x[i];
            for (auto& s : s_) v = s.tick(v);
            x[i] = gain_.next() * v;
        }
    }
    void reset() override { for (auto& s : s_) s.reset(); }
    void flushDenormals() override { for (auto& s : s_) s.flushDenormals(); }
    int latency() const override { return 0; }

private:
    dsp::Section s_[8];
    dsp::Ramp gain_;
};

// ---------------------------------------------------------------------------- amp
// = dsp.topologies.AmpTopology. From the first tube stage on, everything runs at the
// oversampled rate rs = oversample * fs (filters designed at rs):
//   x -> HP1(in_hp) -> *pre -> up -> tube(b1) -> HP1 LP1 (inter1) -> *stage2 -> tube(b2)
//     -> HP1 LP1 (inter2) -> TMB tone stack [-> blend tone (1 - t) LP1 + t HP1, shared
//     blend_tone] -> *post -> sag (RMS envelope, gain)
//     -> *master -> push_pull (with pa_imbalance) -> HS(presence) -> peak(depth, Q 0.9)
//     [-> HP1(5 Hz), left out when shared output_dc is 1] -> *level -> down
//     [-> LP2 x2 (output_lp)] [-> all-pass x2] [-> all-pass x2 (allpass2)]
// (shared tonestack_position = 1: the TMB stack sits after inter1, before *stage2;
// shared drive_section = 1: x -> HP1(in_hp) -> up -> drive section -> *pre -> tube(b1) ...,
// the drive section being (1 - mix) v + mix sum_k L_k softclip(g_k band_k(v));
// shared band_chain = 1: after *pre the signal is split into five bands and everything
// from tube(b1) to push_pull runs once per band, each with its own filter and sag states,
// the bands' outputs summed before HS(presence))
class AmpBlock final : public Block {
public:
    enum { IN_HP, PRE_GAIN, TUBE1_BIAS, INTER1_HP, INTER1_LP, STAGE2_GAIN, TUBE2_BIAS, INTER2_HP, INTER2_LP,
           TREBLE, MID, BASS, POST_GAIN, SAG_DEPTH, SAG_THRESHOLD, SAG_TIME, MASTER, PA_BIAS, PA_CROSSOVER,
           PA_LEVEL, PRESENCE_HZ, PRESENCE_DB, DEPTH_HZ, DEPTH_DB, LEVEL, AP1_HZ, AP1_Q, AP2_HZ, AP2_Q,
           OUT_LP1_HZ, OUT_LP1_Q, OUT_LP2_HZ, OUT_LP2_Q, AP3_HZ, AP3_Q, AP4_HZ, AP4_Q, PA_IMBALANCE, DRIVE_MIX, DRIVE_DB,
           TONE_BLEND, BLEND_LP, BLEND_HP, N };
    std::string expectedControl(size_t i) const override {
        static const char* names[N] = {
            "in_hp_hz", "pre_gain_db", "tube1_bias", "inter1_hp_hz", "inter1_lp_hz", "stage2_gain_db",
            "tube2_bias", "inter2_hp_hz", "inter2_lp_hz", "tonestack_treble", "tonestack_mid", "tonestack_bass",
            "post_gain_db", "sag_depth", "sag_threshold", "sag_time_s", "master_db", "pa_bias", "pa_crossover",
            "pa_level", "presence_hz", "presence_db", "depth_hz", "depth_db", "level_db", "ap1_hz", "ap1_q",
            "ap2_hz", "ap2_q", "out_lp1_hz", "out_lp1_q", "out_lp2_hz", "out_lp2_q", "ap3_hz", "ap3_q",
            "ap4_hz", "ap4_q", "pa_imbalance", "drive_mix", "drive_db", "tone_blend", "blend_lp_hz",
            "blend_hp_hz"};
        return i < N ? names[i] : "";
    }
    size_t numExpectedControls() const override { return N; }

    void loadShared(const json::Value& sh) override {
        r1_ = sh["r1_ohm"].num(); r2_ = sh["r2_ohm"].num(); r3_ = sh["r3_ohm"].num(); r4_ = sh["r4_ohm"].num();
        c1_ = sh["c1_farad"].num(); c2_ = sh["c2_farad"].num(); c3_ = sh["c3_farad"].num();
        taperT_ = sh["taper_treble"].num(); taperM_ = sh["taper_mid"].num(); taperB_ = sh["taper_bass"].num();
        between_ = sh.has("tonestack_position") && sh["tonestack_position"].num() > 0.5;
        // the blend tone after the stack (off in a model exported before it existed)
        blendOn_ = sh.has("blend_tone") && sh["blend_tone"].num() > 0.5;
        outputDc_ = sh.has("output_dc") && sh["output_dc"].num() > 0.5;
        // shaper_tables: the three shapers' learnable corrections (off in a model exported
        // before they existed)
        tablesOn_ = sh.has("shaper_tables") && sh["shaper_tables"].num() > 0.5;
        if (tablesOn_) {
            for (int st = 0; st < 3; ++st)
                for (int j = 0; j < kKnots; ++j) {
                    char name[32];
                    std::snprintf(name, sizeof name, "shape%d_%02d", st + 1, j);
                    table_[st][j] = sh[name].num();
                }
        }
        // band_split (a model exported before it existed has none: off)
        bandSplit_ = sh.has("band_split") && sh["band_split"].num() > 0.5;
        if (bandSplit_) {
            sortedCrossovers(sh, "xo", kBands - 1, xoHz_);
            for (int k = 0; k < kBands; ++k) {
                bandGain_[k] = dsp::dbToGain(sh["band" + std::to_string(k + 1) + "_drive_db"].num());
                bandInv_[k] = 1.0 / bandGain_[k];
            }
        }
        // band_chain (likewise): the chain once per band, at its own crossovers
        chainOn_ = sh.has("band_chain") && sh["band_chain"].num() > 0.5;
        if (chainOn_) sortedCrossovers(sh, "cxo", kChainBands - 1, cxoHz_);
        // drive_section (likewise: off in a model exported before it existed)
        driveOn_ = sh.has("drive_section") && sh["drive_section"].num() > 0.5;
        if (driveOn_) {
            sortedCrossovers(sh, "dxo", kBands - 1, dxoHz_);
            // drive_section_v2 (off in a model exported before it: the first form)
            driveV2_ = sh.has("drive_section_v2") && sh["drive_section_v2"].num() > 0.5;
            for (int k = 0; k < kBands; ++k) {
                const std::string b = "drive_band" + std::to_string(k + 1);
                driveBandDb_[k] = sh[b + "_db"].num();
                driveLevel_[k] = dsp::dbToGain(sh[b + "_level_db"].num());
                driveSlope_[k] = driveV2_ ? sh[b + "_slope"].num() : 1.0;
            }
            if (driveV2_) { dlpHz_ = sh["dlp_hz"].num(); dhpHz_ = sh["dhp_hz"].num(); }
        }
        loadOutputSections(sh);
    }
    /// The crossovers PREFIX1_hz.. highest first, as dsp.topologies.split_bands sorts
    /// them (stable on ties).
    static void sortedCrossovers(const json::Value& sh, const std::string& prefix, int n, double* out) {
        double xo[kMaxCrossovers];
        int order[kMaxCrossovers];
        for (int i = 0; i < n; ++i) {
            xo[i] = sh[prefix + std::to_string(i + 1) + "_hz"].num();
            order[i] = i;
        }
        std::stable_sort(order, order + n, [&](int a, int b) { return xo[a] > xo[b]; });
        for (int j = 0; j < n; ++j) out[j] = xo[order[j]];
    }

    /// Pot taper expm1(k p) / expm1(k), k >= 1e-3.
    static double taper(double p, double k) {
        k = std::max(k, 1e-3);
        return std::expm1(k * p) / std::expm1(k);
    }
    /// Yeh & Smith TMB tone stack (dsp.tonestack.tonestack_analog), bilinear with c = 2 fs.
    void designToneStack(double fs, double t, double m, double l) {
        const double r1 = r1_, r2 = r2_, r3 = r3_, r4 = r4_, c1 = c1_, c2 = c2_, c3 = c3_;
        const double c123 = c1 * c2 * c3, c12 = c1 + c2, m2 = m * m;
        const double b1 = t * c1 * r1 + m * c3 * r3 + l * c12 * r2 + c12 * r3;
        const double b2 = (t * (c1 * c2 + c1 * c3) * r1 * r4 - m2 * c12 * c3 * r3 * r3 +
                           m * (c1 * c3 * r1 * r3 + c12 * c3 * r3 * r3) +
                           l * (c1 * c2 * r1 * r2 + c1 * c2 * r2 * r4 + c1 * c3 * r2 * r4) +
                           l * m * c12 * c3 * r2 * r3 + (c1 * c2 * r1 * r3 + c1 * c2 * r3 * r4 + c1 * c3 * r3 * r4));
        const double b3 = c123 * (l * m * (r1 + r4) * r2 * r3 - m2 * (r1 + r4) * r3 * r3 + m * (r1 + r4) * r3 * r3 +
                                  t * r1 * r3 * r4 - t * m * r1 * r3 * r4 + t * l * r1 * r2 * r4);
        const double a1 = (c1 * r1 + c1 * r3 + c2 * r3 + c2 * r4 + c3 * r4) + m * c3 * r3 + l * c12 * r2;
        const double a2 = (m * (c1 * c3 * r1 * r3 - c2 * c3 * r3 * r4 + c12 * c3 * r3 * r3) +
                           l * m * c12 * c3 * r2 * r3 - m2 * c12 * c3 * r3 * r3 +
                           l * (c1 * c2 * r2 * r4 + c1 * c2 * r1 * r2 + c1 * c3 * r2 * r4 + c2 * c3 * r2 * r4) +
                           (c1 * c2 * r1 * r4 + c1 * c3 * r1 * r4 + c1 * c2 * r3 * r4 + c1 * c2 * r1 * r3 +
                            c1 * c3 * r3 * r4 + c2 * c3 * r3 * r4));
        const double a3 = c123 * (l * m * (r1 + r4) * r2 * r3 - m2 * (r1 + r4) * r3 * r3 +
                                  m * (r3 * r3 * r4 + r1 * r3 * r3 - r1 * r3 * r4) + l * r1 * r2 * r4 + r1 * r3 * r4);
        const double c = 2.0 * fs, cc = c * c, ccc = cc * c;
        const double B[4] = {0.0, b1 * c, b2 * cc, b3 * ccc}, A[4] = {1.0, a1 * c, a2 * cc, a3 * ccc};
        static const double M[4][4] = {{1, 3, 3, 1}, {1, 1, -1, -1}, {1, -1, -1, 1}, {1, -3, 3, -1}};
        double bd[4], ad[4];
        for (int j = 0; j < 4; ++j) {
            bd[j] = ad[j] = 0;
            for (int k = 0; k < 4; ++k) { bd[j] += B[k] * M[k][j]; ad[j] += A[k] * M[k][j]; }
        }
        for (int j = 0; j < 4; ++j) { chain_[0].ts.b[j] = bd[j] / ad[0]; chain_[0].ts.a[j] = ad[j] / ad[0]; }
    }

    void setControls(const double* c) override {
        const double fs = sampleRate, rs = sampleRate * oversample;
        using K = dsp::BiquadKind;
        dsp::onepole(inHp_, true, fs, c[IN_HP]);
        pre_.set(dsp::dbToGain(c[PRE_GAIN]), snap_);
        bias1_ = c[TUBE1_BIAS];
        bias2_ = c[TUBE2_BIAS];
        f1_ = tube(0, bias1_);
        f2_ = tube(1, bias2_);
        if (tablesOn_) rest3_ = corr(2, 0.0);
        Chain& ch = chain_[0];  // the designs; the other bands' chains copy them
        dsp::onepole(ch.hp1, true, rs, c[INTER1_HP]);
        dsp::onepole(ch.lp1, false, rs, c[INTER1_LP]);
        stage2_.set(dsp::dbToGain(c[STAGE2_GAIN]), snap_);
        dsp::onepole(ch.hp2, true, rs, c[INTER2_HP]);
        dsp::onepole(ch.lp2, false, rs, c[INTER2_LP]);
        designToneStack(rs, taper(c[TREBLE], taperT_), taper(c[MID], taperM_), taper(c[BASS], taperB_));
        if (blendOn_) dsp::blend(ch.blend, rs, c[TONE_BLEND], c[BLEND_LP], c[BLEND_HP]);
        if (chainOn_)
            for (int k = 1; k < kChainBands; ++k) chain_[k].coefficientsFrom(ch);
        post_.set(dsp::dbToGain(c[POST_GAIN]), snap_);
        sagDepth_ = c[SAG_DEPTH];
        sagThr_ = c[SAG_THRESHOLD];
        sagAlpha_ = std::exp(-1.0 / (c[SAG_TIME] * rs));
        sagOn0_ = on(-sagThr_, kSagKnee2);
        master_.set(dsp::dbToGain(c[MASTER]), snap_);
        paBias_ = c[PA_BIAS];
        paCross2_ = c[PA_CROSSOVER] * c[PA_CROSSOVER] + 1e-24;
        paInv2Level_ = 1.0 / (2.0 * c[PA_LEVEL]);
        paImb_ = c[PA_IMBALANCE];
        paRest_ = half(paBias_);
        dsp::biquad(presence_, K::Highshelf, rs, c[PRESENCE_HZ], 0.7071, c[PRESENCE_DB]);
        dsp::biquad(depth_, K::Peak, rs, c[DEPTH_HZ], 0.9, c[DEPTH_DB]);
        dsp::onepole(dc_, true, rs, 5.0);
        level_.set(dsp::dbToGain(c[LEVEL]) * polarity, snap_);
        setAllpass(c, AP1_HZ);
        setAllpass2(c, AP3_HZ);
        setOutputLp(c, OUT_LP1_HZ);
        driveMix_.set(c[DRIVE_MIX], snap_);
        for (int k = 0; k < kBands; ++k)
            driveGain_[k].set(dsp::dbToGain(c[DRIVE_DB] * driveSlope_[k] + driveBandDb_[k]), snap_);
    }
    /// The crossovers are shared values (no knob moves them): designed once per rate.
    void prepare(double sr) override {
        Block::prepare(sr);
        if (bandSplit_) split_.design(xoHz_, sr * oversample);
        if (driveOn_) dsplit_.design(dxoHz_, sr * oversample);
        if (chainOn_) csplit_.design(cxoHz_, sr * oversample);
        if (driveOn_ && driveV2_) {
            for (dsp::Section* s : {&dlpIn_, &dlpOut_}) dsp::onepole(*s, false, sr * oversample, dlpHz_);
            for (dsp::Section* s : {&dhpIn_, &dhpOut_}) dsp::onepole(*s, true, sr * oversample, dhpHz_);
        }
    }

    void process(double* x, int n) override {
        if (driveOn_) chainOn_ ? run<true, true>(x, n) : run<true, false>(x, n);
        else chainOn_ ? run<false, true>(x, n) : run<false, false>(x, n);
    }
    void reset() override {
        Block::reset();
        inHp_.reset();
        for (Chain& ch : chain_) ch.reset();
        presence_.reset(); depth_.reset(); dc_.reset();
        split_.reset(); dsplit_.reset(); csplit_.reset();
        dlpIn_.reset(); dhpIn_.reset(); dlpOut_.reset(); dhpOut_.reset();
    }
    void flushDenormals() override {
        inHp_.flushDenormals(); presence_.flushDenormals();
        for (Chain& ch : chain_) ch.flushDenormals();
        depth_.flushDenormals(); dc_.flushDenormals(); ap1_.flushDenormals(); ap2_.flushDenormals(); ap3_.flushDenormals();
        ap4_.flushDenormals(); olp1_.flushDenormals(); olp2_.flushDenormals();
        dlpIn_.flushDenormals(); dhpIn_.flushDenormals(); dlpOut_.flushDenormals(); dhpOut_.flushDenormals();
        split_.flushDenormals(); dsplit_.flushDenormals(); csplit_.flushDenormals();
    }

private:
    static constexpr int kBands = 4;  // dsp.topologies.AMP_BANDS
    static constexpr int kChainBands = 5;  // dsp.topologies.CHAIN_BANDS
    static constexpr int kMaxCrossovers = kChainBands - 1;
    /// dsp.topologies.split_bands as a recursion: v -> band[0..NB) (top band first), at
    /// NB - 1 crossovers sorted highest first. Per crossover j: HP one-pole, HP biquad
    /// (Q 1), LP one-pole, LP biquad (Q 1); then each band's all-passes (Q 1) at the
    /// crossovers below it. The crossovers are shared values: designed once per rate.
    template <int NB>
    struct Split {
        enum { kHp1 = 0, kHp2 = 1, kLp1 = 2, kLp2 = 3, kPerXo = 4, kAp = kPerXo * (NB - 1) };
        static constexpr int kSections = kAp + (NB - 1) * (NB - 2) / 2;
        dsp::Section s[kSections];
        void design(const double* xoHz, double rs) {
            using K = dsp::BiquadKind;
            for (int j = 0; j < NB - 1; ++j) {
                dsp::Section* x = &s[kPerXo * j];
                dsp::onepole(x[kHp1], true, rs, xoHz[j]);
                dsp::biquad(x[kHp2], K::Highpass, rs, xoHz[j], 1.0, 0.0);
                dsp::onepole(x[kLp1], false, rs, xoHz[j]);
                dsp::biquad(x[kLp2], K::Lowpass, rs, xoHz[j], 1.0, 0.0);
            }
            int a = kAp;
            for (int j = 0; j < NB - 1; ++j)
                for (int m = j + 1; m < NB - 1; ++m) dsp::biquad(s[a++], K::Allpass, rs, xoHz[m], 1.0, 0.0);
        }
        inline void tick(double v, double* band) {
            double rest = v;
            for (int j = 0; j < NB - 1; ++j) {
                dsp::Section* x = &s[kPerXo * j];
                band[j] = x[kHp2].tick(x[kHp1].tick1(rest));
                rest = x[kLp2].tick(x[kLp1].tick1(rest));
            }
            band[NB - 1] = rest;
            int a = kAp;
            for (int j = 0; j < NB - 1; ++j)
                for (int m = j + 1; m < NB - 1; ++m) band[j] = s[a++].tickAllpass(band[j]);
        }
        void reset() { for (auto& x : s) x.reset(); }
        void flushDenormals() { for (auto& x : s) x.flushDenormals(); }
    };
    /// The nonlinear chain's states (interstage filters, tone section, sag envelope):
    /// one chain, or one per band with band_chain. chain_[0] holds the designs and the
    /// other bands take its coefficients, keeping their own states.
    struct Chain {
        dsp::Section hp1, lp1, hp2, lp2, blend;
        dsp::Section3 ts;
        double sagE = 0;
        void coefficientsFrom(const Chain& o) {
            for (auto [d, s] : {std::pair{&hp1, &o.hp1}, std::pair{&lp1, &o.lp1}, std::pair{&hp2, &o.hp2},
                                std::pair{&lp2, &o.lp2}, std::pair{&blend, &o.blend}}) {
                d->b0 = s->b0; d->b1 = s->b1; d->b2 = s->b2; d->a1 = s->a1; d->a2 = s->a2;
            }
            std::copy(std::begin(o.ts.b), std::end(o.ts.b), std::begin(ts.b));
            std::copy(std::begin(o.ts.a), std::end(o.ts.a), std::begin(ts.a));
        }
        void reset() { hp1.reset(); lp1.reset(); hp2.reset(); lp2.reset(); blend.reset(); ts.reset(); sagE = 0; }
        void flushDenormals() {
            hp1.flushDenormals(); lp1.flushDenormals(); hp2.flushDenormals(); lp2.flushDenormals();
            blend.flushDenormals(); ts.flushDenormals();
            if (sagE < 1e-30) sagE = 0;
        }
    };
    /// The first tube stage with the band split (dsp.topologies.AmpTopology._tube1):
    /// sum over bands k of (tube(g_k b_k + bias) - tube(bias)) / g_k.
    inline double splitStage1(double v) {
        double band[kBands];
        split_.tick(v, band);
        double y = 0;
        for (int k = 0; k < kBands; ++k)
            y += (tube(0, bandGain_[k] * band[k] + bias1_) - f1_) * bandInv_[k];
        return y;
    }

    /// The drive section (dsp.topologies.AmpTopology._drive), one high-rate sample.
    /// Second form (drive_section_v2): BL = LP1(dlp) HP1(dhp) before the split and again
    /// after the sum, cubic band clippers, min(1, 2 (1 - mix)) v + min(1, 2 mix) w.
    /// First form: (1 - mix) v + mix sum_k L_k softclip(g_k band_k), x / sqrt(1 + x^2).
    inline double drive(double v, double mix, const double* g) {
        double band[kBands];
        double w = 0;
        if (driveV2_) {
            dsplit_.tick(dhpIn_.tick1(dlpIn_.tick1(v)), band);
            for (int k = 0; k < kBands; ++k) {
                const double z = std::clamp(g[k] * band[k], -1.0, 1.0);
                w += driveLevel_[k] * (z - z * z * z / 3.0);
            }
            w = dhpOut_.tick1(dlpOut_.tick1(w));
            return std::min(1.0, 2.0 * (1.0 - mix)) * v + std::min(1.0, 2.0 * mix) * w;
        }
        dsplit_.tick(v, band);
        for (int k = 0; k < kBands; ++k) w += driveLevel_[k] * dsp::softClip2(g[k] * band[k], 1.0, 1.0);
        return (1.0 - mix) * v + mix * w;
    }
    /// process(), with or without the drive section and the band chain (compile-time
    /// choices: the plain amp's loops carry no test for them). The drive section runs at the high rate on the
    /// input's level, so the pre-gain follows it there (x -> HP1 -> up -> drive -> *pre
    /// -> tube 1 ...); without it the pre-gain is applied before the upsampler.
    template <bool Drive, bool Chained>
    void run(double* x, int n) {
        const int L = oversample;
        double g[kBands];
        if (L == 1) {
            for (int i = 0; i < n; ++i) {
                double u = pre_.next();
                if constexpr (Drive) {
                    const double mix = driveMix_.next();
                    for (int k = 0; k < kBands; ++k) g[k] = driveGain_[k].next();
                    u *= drive(inHp_.tick1(x[i]), mix, g);
                } else {
                    u *= inHp_.tick1(x[i]);
                }
                x[i] = highRate<Chained>(u, stage2_.next(), post_.next(), master_.next(), level_.next());
            }
            outputSections(x, n);
            return;
        }
        // up the chunk, run the high-rate chain in time order, then down
        float* u = resampler.input();
        for (int i = 0; i < n; ++i) {
            if constexpr (Drive) u[i] = (float)inHp_.tick1(x[i]);
            else u[i] = (float)(pre_.next() * inHp_.tick1(x[i]));
        }
        resampler.up(n);
        float* w[kMaxOversample];
        for (int q = 0; q < L; ++q) w[q] = resampler.plane(q);
        for (int i = 0; i < n; ++i) {
            double gPre = 1.0, mix = 0.0;
            if constexpr (Drive) {
                gPre = pre_.next();
                mix = driveMix_.next();
                for (int k = 0; k < kBands; ++k) g[k] = driveGain_[k].next();
            }
            const double gStage2 = stage2_.next(), gPost = post_.next(), gMaster = master_.next(),
                         gLevel = level_.next();
            for (int q = 0; q < L; ++q) {
                double v = w[q][i];
                if constexpr (Drive) v = gPre * drive(v, mix, g);
                w[q][i] = (float)highRate<Chained>(v, gStage2, gPost, gMaster, gLevel);
            }
        }
        float y[kChunk + 4];
        resampler.down(y, n);
        for (int i = 0; i < n; ++i) x[i] = y[i];
        outputSections(x, n);
    }

    /// One high-rate sample through the tubes, tone stack, sag, power amp and output.
    /// (Chained: band_chain, a compile-time choice like the drive section's.)
    template <bool Chained>
    inline double highRate(double v, double gStage2, double gPost, double gMaster, double gLevel) {
        if constexpr (Chained) {  // band_chain: the chain once per band, summed
            double band[kChainBands];
            csplit_.tick(v, band);
            v = 0;
            for (int k = 0; k < kChainBands; ++k) v += chain<true>(chain_[k], band[k], gStage2, gPost, gMaster);
        } else {
            v = chain<false>(chain_[0], v, gStage2, gPost, gMaster);
        }
        v = depth_.tick(presence_.tick(v));
        return gLevel * (outputDc_ ? v : dc_.tick1(v));
    }
    /// dsp.topologies.AmpTopology._chain, one high-rate sample on the states ``ch``.
    /// (Chained: the first stage's band split is not used inside a band chain.)
    template <bool Chained>
    inline double chain(Chain& ch, double v, double gStage2, double gPost, double gMaster) {
        v = (!Chained && bandSplit_) ? splitStage1(v) : tube(0, v + bias1_) - f1_;
        v = ch.lp1.tick1(ch.hp1.tick1(v));
        if (between_) v = tone(ch, v);  // Fender arrangement: V1A -> stack -> V1B
        v = tube(1, gStage2 * v + bias2_) - f2_;
        v = ch.lp2.tick1(ch.hp2.tick1(v));
        if (!between_) v = tone(ch, v);
        v = gPost * v;
        // sag: e = (1 - a) v^2 + a e; env = sqrt(max(e, 0) + 1e-12)
        ch.sagE = (1.0 - sagAlpha_) * (v * v) + sagAlpha_ * ch.sagE;
        const double env = std::sqrt(std::max(ch.sagE, 0.0) + 1e-12);
        const double g = 1.0 / (1.0 + sagDepth_ * (on(env - sagThr_, kSagKnee2) - sagOn0_));
        v *= g * gMaster;
        return tablesOn_ ? pushPull(v) + (corr(2, v) - rest3_) : pushPull(v);
    }
    /// The tone section: the TMB stack [, then the blend tone].
    inline double tone(Chain& ch, double v) {
        v = ch.ts.tick(v);
        return blendOn_ ? ch.blend.tick(v) : v;
    }
    /// the shaper tables (dsp.topologies.SHAPER_KNOTS, SHAPER_RANGE): stage 0, 1 the tube
    /// stages, 2 the push-pull stage
    static constexpr int kKnots = 49;
    static constexpr double kTableRange = 3.0;
    inline double corr(int stage, double x) const {
        return dsp::tableShaper<kKnots>(table_[stage], x, kTableRange);
    }
    /// tube stage ``stage`` (0, 1)'s curve at x = input + bias, before its rest value is
    /// taken off: the soft clip, plus its table with shaper_tables
    inline double tube(int stage, double x) const {
        return dsp::softClip2(x, 1.0, 1.0) + (tablesOn_ ? corr(stage, x) : 0.0);
    }
    static constexpr double kSagKnee2 = 0.05 * 0.05 + 1e-24;  // dsp.dynamics.sag_gain knee
    /// smooth max(u, 0): 0.5 (u + sqrt(u^2 + k^2))
    static inline double on(double u, double k2) { return 0.5 * (u + std::sqrt(u * u + k2)); }
    /// dsp.shapers.push_pull: 0.5 [(1 + i) half(v + b) - (1 - i) half(b - v)] - i half(b),
    /// computed as 0.5 [(p - q) + i ((p - r) + (q - r))]: silence in is exactly 0 out.
    inline double half(double u) const {
        const double o = on(u, paCross2_), r = o * paInv2Level_;
        return o / std::sqrt(1.0 + r * r);
    }
    inline double pushPull(double v) const {
        const double p = half(v + paBias_), q = half(paBias_ - v);
        return 0.5 * ((p - q) + paImb_ * ((p - paRest_) + (q - paRest_)));
    }

    dsp::Section inHp_, presence_, depth_, dc_;
    Chain chain_[kChainBands];
    dsp::Ramp pre_, stage2_, post_, master_, level_;
    double bias1_ = 0, bias2_ = 0, f1_ = 0, f2_ = 0;
    double sagDepth_ = 0, sagThr_ = 0, sagAlpha_ = 0, sagOn0_ = 0;
    double paBias_ = 0, paCross2_ = 0, paInv2Level_ = 0.5, paImb_ = 0, paRest_ = 0;
    double r1_ = 220e3, r2_ = 1e6, r3_ = 22e3, r4_ = 33e3, c1_ = 470e-12, c2_ = 22e-9, c3_ = 22e-9;
    double taperT_ = 0.5, taperM_ = 0.5, taperB_ = 3.4;
    bool between_ = false;  // shared tonestack_position: 1 = between the tube stages
    bool blendOn_ = false;  // shared blend_tone: the blend tone after the TMB stack
    bool outputDc_ = false;  // shared output_dc: 1 = no output high-pass (the DC stays)
    bool tablesOn_ = false;  // shared shaper_tables: the shapers' learnable corrections
    double table_[3][kKnots] = {}, rest3_ = 0;
    bool bandSplit_ = false;  // shared band_split: the first tube stage runs per band
    double xoHz_[kBands - 1] = {}, bandGain_[kBands] = {1, 1, 1, 1}, bandInv_[kBands] = {1, 1, 1, 1};
    Split<kBands> split_;
    bool driveOn_ = false;  // shared drive_section: the drive section runs before *pre
    double dxoHz_[kBands - 1] = {}, driveBandDb_[kBands] = {}, driveLevel_[kBands] = {1, 1, 1, 1};
    bool driveV2_ = false;  // shared drive_section_v2: the drive section's second form
    double driveSlope_[kBands] = {1, 1, 1, 1}, dlpHz_ = 6500.0, dhpHz_ = 120.0;
    dsp::Section dlpIn_, dhpIn_, dlpOut_, dhpOut_;
    dsp::Ramp driveMix_, driveGain_[kBands];
    Split<kBands> dsplit_;
    bool chainOn_ = false;  // shared band_chain: the chain runs once per band
    double cxoHz_[kChainBands - 1] = {};
    Split<kChainBands> csplit_;
};

inline std::unique_ptr<Block> makeBlock(const std::string& topology);

// ======================================================================================
// Engine: the blocks in series, knobs, smoothing
// ======================================================================================
struct KnobInfo {
    std::string id;      // unique within the model: the knob name, or "block/name" on a clash
    std::string name;    // as in the rig file
    std::string block;   // block name
    bool isSwitch = false;
    bool modelled = true;  // false: a fixed knob (recorded; it does not change the sound)
    double minimum = 0, maximum = 10, reference = 5;
    std::vector<double> positions;
};

class Engine {
public:
    static Engine fromJson(const std::string& text) {
        Engine e;
        e.load(json::parse(text));
        return e;
    }
    static Engine fromFile(const std::string& path) {
        std::ifstream f(path, std::ios::binary);
        if (!f) throw std::runtime_error("unit-model: cannot open " + path);
        std::stringstream ss;
        ss << f.rdbuf();
        return fromJson(ss.str());
    }

    Engine() = default;
    Engine(Engine&&) = default;
    Engine& operator=(Engine&&) = default;

    // -- set-up (not real-time) ---------------------------------------------------
    void prepare(double sampleRate, int maxBlockSize) {
        (void)maxBlockSize;  // processing runs in fixed kChunk pieces: any block size works
        sampleRate_ = sampleRate;
        for (auto& b : blocks_) b->prepare(sampleRate);
        prepared_ = true;
        setSmoothingTime(smoothingTime_);
        reset();
    }
    /// Clears every state (real-time safe); knobs jump to their targets.
    void reset() {
        for (auto& b : blocks_) b->reset();
        current_ = target_;
        if (prepared_) updateAll();
    }
    void setSmoothing(bool on) { smoothing_ = on; }
    void setSmoothingTime(double seconds) {
        smoothingTime_ = seconds;
        smoothCoef_ = seconds > 0 ? 1.0 - std::exp(-kChunk / (seconds * sampleRate_)) : 1.0;
    }

    // -- knobs ------------------------------------------------------------------------
    int numKnobs() const { return (int)knobs_.size(); }
    const KnobInfo& knob(int i) const { return knobs_.at((size_t)i); }
    int knobIndex(const std::string& idOrName) const {
        for (size_t i = 0; i < knobs_.size(); ++i)
            if (knobs_[i].id == idOrName) return (int)i;
        int found = -1;
        for (size_t i = 0; i < knobs_.size(); ++i)
            if (knobs_[i].name == idOrName) {
                if (found >= 0) return -1;  // ambiguous: use the id "block/name"
                found = (int)i;
            }
        return found;
    }
    /// Real-time safe. Values are clamped to the knob's range.
    void setKnob(int index, double value) {
        if (index < 0 || index >= (int)knobs_.size()) return;
        const KnobInfo& k = knobs_[(size_t)index];
        value = std::min(std::max(value, k.minimum), k.maximum);
        target_[(size_t)index] = value;
        if (!prepared_ || !smoothing_ || k.isSwitch) current_[(size_t)index] = value;
        dirty_ = true;
    }
    /// Not real-time safe if called with a std::string built on the fly; prefer indices.
    bool setKnob(const std::string& idOrName, double value) {
        int i = knobIndex(idOrName);
        if (i < 0) return false;
        setKnob(i, value);
        return true;
    }
    double getKnob(int index) const { return target_.at((size_t)index); }

    int latencySamples() const {
        int l = 0;
        for (auto& b : blocks_) l += b->latency();
        return l;
    }
    double sampleRate() const { return sampleRate_; }
    int numBlocks() const { return (int)blocks_.size(); }
    const Block& block(int i) const { return *blocks_.at((size_t)i); }

    // -- audio ------------------------------------------------------------------------
    /// In place, mono. Real-time safe.
    void process(float* samples, int n) {
        if (!prepared_) return;  // not prepared: pass the input through
        DenormalGuard guard;
        double buf[kChunk];
        for (int done = 0; done < n;) {
            int m = std::min(kChunk, n - done);
            if (dirty_) advanceKnobs();
            for (int i = 0; i < m; ++i) buf[i] = samples[done + i];
            for (auto& b : blocks_) b->process(buf, m);
            for (int i = 0; i < m; ++i) samples[done + i] = (float)buf[i];
            done += m;
            if (++chunkCount_ >= 64) {
                chunkCount_ = 0;
                for (auto& b : blocks_) b->flushDenormals();
            }
        }
    }
    /// Double-precision variant (tests, offline rendering).
    void process(double* samples, int n) {
        if (!prepared_) return;
        DenormalGuard guard;
        for (int done = 0; done < n;) {
            int m = std::min(kChunk, n - done);
            if (dirty_) advanceKnobs();
            for (auto& b : blocks_) b->process(samples + done, m);
            done += m;
        }
    }

private:
    struct DenormalGuard {
#if defined(UNIT_ENGINE_X86_FTZ)
        unsigned int saved = _mm_getcsr();
        DenormalGuard() { _mm_setcsr(saved | 0x8040u); }  // FTZ | DAZ
        ~DenormalGuard() { _mm_setcsr(saved); }
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
        uint64_t saved;
        DenormalGuard() {
            __asm__ __volatile__("mrs %0, fpcr" : "=r"(saved));
            uint64_t v = saved | (1ull << 24);  // FZ
            __asm__ __volatile__("msr fpcr, %0" : : "r"(v));
        }
        ~DenormalGuard() { __asm__ __volatile__("msr fpcr, %0" : : "r"(saved)); }
#endif
    };

    void load(const json::Value& doc) {
        if (doc["format"].str() != "unit-model")
            throw std::runtime_error("not a unit-model document");
        if ((int)doc["version"].num() != kModelFormatVersion)
            throw std::runtime_error("unit-model: version " + std::to_string((int)doc["version"].num()) +
                                     " (this engine reads " + std::to_string(kModelFormatVersion) + ")");
        for (auto& b : doc["blocks"].items) {
            auto blk = makeBlock(b["topology"].str());
            blk->load(b);
            blocks_.push_back(std::move(blk));
        }
        for (auto& k : doc["knobs"].items) {
            KnobInfo info;
            info.id = k["id"].str();
            info.name = k["name"].str();
            info.block = k["block"].str();
            info.isSwitch = k["kind"].str() == "switch";
            info.modelled = k["modelled"].boolean;
            info.minimum = k["minimum"].num();
            info.maximum = k["maximum"].num();
            info.reference = k["reference"].num();
            info.positions = k["positions"].nums();
            int blockIdx = -1, local = -1;
            if (info.modelled) {
                for (size_t bi = 0; bi < blocks_.size(); ++bi)
                    if (blocks_[bi]->name == info.block) {
                        blockIdx = (int)bi;
                        for (size_t j = 0; j < blocks_[bi]->map.knobs.size(); ++j)
                            if (blocks_[bi]->map.knobs[j].name == info.name) local = (int)j;
                    }
                if (local < 0) throw std::runtime_error("unit-model: knob '" + info.id + "' not in its block");
            }
            route_.push_back({blockIdx, local});
            knobs_.push_back(info);
            target_.push_back(info.reference);
        }
        current_ = target_;
        local_.assign(blocks_.size(), std::vector<double>());
        for (size_t bi = 0; bi < blocks_.size(); ++bi) {
            local_[bi].assign(blocks_[bi]->map.knobs.size(), 0.0);
            for (size_t j = 0; j < blocks_[bi]->map.knobs.size(); ++j)
                local_[bi][j] = blocks_[bi]->map.knobs[j].reference;
        }
        blockDirty_.assign(blocks_.size(), 1);
    }

    void advanceKnobs() {
        bool moving = false;
        for (size_t i = 0; i < knobs_.size(); ++i) {
            double t = target_[i], c = current_[i];
            if (c != t) {
                double span = knobs_[i].maximum - knobs_[i].minimum;
                c += smoothCoef_ * (t - c);
                if (std::fabs(t - c) <= 1e-4 * (span > 0 ? span : 1.0)) c = t;
                current_[i] = c;
                if (c != t) moving = true;
            }
            const auto& r = route_[i];
            if (r.first >= 0 && local_[(size_t)r.first][(size_t)r.second] != current_[i]) {
                local_[(size_t)r.first][(size_t)r.second] = current_[i];
                blockDirty_[(size_t)r.first] = 1;
            }
        }
        for (size_t bi = 0; bi < blocks_.size(); ++bi)
            if (blockDirty_[bi]) {
                blocks_[bi]->setKnobs(local_[bi].data(), snapNext_ || !smoothing_);
                blockDirty_[bi] = 0;
            }
        dirty_ = moving;
        snapNext_ = false;
    }
    void updateAll() {
        std::fill(blockDirty_.begin(), blockDirty_.end(), 1);
        dirty_ = true;
        snapNext_ = true;
        advanceKnobs();
    }

    std::vector<std::unique_ptr<Block>> blocks_;
    std::vector<KnobInfo> knobs_;
    std::vector<std::pair<int, int>> route_;  // knob -> (block, knob index in its map)
    std::vector<double> target_, current_;
    std::vector<std::vector<double>> local_;
    std::vector<char> blockDirty_;
    double sampleRate_ = 48000.0;
    double smoothingTime_ = 0.02, smoothCoef_ = 1.0;
    bool smoothing_ = true, prepared_ = false, dirty_ = true, snapNext_ = true;
    int chunkCount_ = 0;
};

}  // namespace unit

namespace unit {
inline std::unique_ptr<Block> makeBlock(const std::string& topology) {
    if (topology == "drive") return std::unique_ptr<Block>(new DriveBlock());
    if (topology == "eq_match") return std::unique_ptr<Block>(new EqMatchBlock());
    if (topology == "amp") return std::unique_ptr<Block>(new AmpBlock());
    throw std::runtime_error("unit-model: unknown topology '" + topology + "'");
}
}  // namespace unit
