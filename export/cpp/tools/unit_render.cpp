// unit_render: run the engine on raw float32 audio (tests) or a synthetic signal (benchmarks).
//
//   unit_render MODEL.json IN.f32 OUT.f32 SAMPLE_RATE [options] [KNOB=VALUE ...]
//   unit_render MODEL.json --bench SECONDS SAMPLE_RATE [options] [KNOB=VALUE ...]
//
// Options: --block N (host block size, default 256), --smooth (knob smoothing on; off by
// default so a setting applies from the first sample), --at SAMPLE KNOB=VALUE (change a
// knob at that sample: smoothing tests), --sweep KNOB (move that knob over its whole
// range once a second, set every block: the cost of automation).
// Render mode appends latencySamples() zeros to the input and writes T + latency samples;
// prints "latency N". Bench mode prints "ns_per_sample X" (SECONDS = 0: set-up only).
#include "../unit_engine.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
    if (argc < 5) { std::fprintf(stderr, "usage: see the top of unit_render.cpp\n"); return 2; }
    try {
        unit::Engine eng = unit::Engine::fromFile(argv[1]);
        bool bench = std::string(argv[2]) == "--bench";
        std::string inPath = argv[2], outPath = argv[3];
        double seconds = bench ? std::atof(argv[3]) : 0.0;
        double sr = std::atof(argv[4]);
        int block = 256;
        bool smooth = false;
        std::string sweep;
        struct Change { long at; std::string knob; double value; };
        std::vector<Change> changes;
        for (int i = 5; i < argc; ++i) {
            std::string a = argv[i];
            if (a == "--block") { block = std::atoi(argv[++i]); continue; }
            if (a == "--smooth") { smooth = true; continue; }
            if (a == "--sweep") { sweep = argv[++i]; continue; }
            long at = 0;
            if (a == "--at") { at = std::atol(argv[++i]); a = argv[++i]; }
            size_t eq = a.rfind('=');
            if (eq == std::string::npos) { std::fprintf(stderr, "bad argument %s\n", a.c_str()); return 2; }
            changes.push_back({at, a.substr(0, eq), std::atof(a.c_str() + eq + 1)});
        }
        eng.setSmoothing(smooth);
        for (auto& c : changes)
            if (c.at == 0 && !eng.setKnob(c.knob, c.value)) { std::fprintf(stderr, "unknown knob %s\n", c.knob.c_str()); return 2; }
        eng.prepare(sr, block);
        std::vector<float> x;
        if (bench) {
            // guitar-ish: decaying partials + a little noise; one 0.5 s pattern made during
            // set-up whatever SECONDS is, then tiled (so the count difference is process()).
            const size_t period = (size_t)(0.5 * sr), n = (size_t)(seconds * sr);
            std::vector<float> pat(period);
            uint32_t s = 12345;
            for (size_t i = 0; i < period; ++i) {
                s = s * 1664525u + 1013904223u;
                double t = (double)i / sr, env = std::exp(-6.0 * t);
                pat[i] = (float)(env * (0.3 * std::sin(2 * 3.14159265 * 110 * t) + 0.15 * std::sin(2 * 3.14159265 * 331 * t)) +
                                 1e-3 * ((double)(s >> 8) / 16777216.0 - 0.5));
            }
            x.resize(n);
            for (size_t i = 0; i < n; i += period) std::copy(pat.begin(), pat.begin() + std::min(period, n - i), x.begin() + i);
        } else {
            FILE* f = std::fopen(inPath.c_str(), "rb");
            if (!f) { std::fprintf(stderr, "cannot open %s\n", inPath.c_str()); return 2; }
            float v;
            while (std::fread(&v, sizeof v, 1, f) == 1) x.push_back(v);
            std::fclose(f);
            x.resize(x.size() + (size_t)eng.latencySamples(), 0.0f);
        }
        const int sweepIndex = sweep.empty() ? -1 : eng.knobIndex(sweep);
        if (!sweep.empty() && sweepIndex < 0) { std::fprintf(stderr, "unknown knob %s\n", sweep.c_str()); return 2; }
        auto t0 = std::chrono::steady_clock::now();
        const long n = (long)x.size();
        for (long i = 0; i < n; i += block) {
            int m = (int)std::min<long>(block, n - i);
            if (sweepIndex >= 0) {
                const unit::KnobInfo& k = eng.knob(sweepIndex);
                const double ph = std::fmod((double)i / sr, 1.0);  // triangle, 1 s period
                eng.setKnob(sweepIndex, k.minimum + (k.maximum - k.minimum) * (ph < 0.5 ? 2 * ph : 2 - 2 * ph));
            }
            for (auto& c : changes)
                if (c.at > 0 && c.at >= i && c.at < i + m) eng.setKnob(c.knob, c.value);
            eng.process(x.data() + i, m);
        }
        auto t1 = std::chrono::steady_clock::now();
        if (bench) {
            double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
            std::printf("ns_per_sample %.3f\n", n ? ns / n : 0.0);
            std::printf("checksum %.9g\n", n ? (double)x[(size_t)n / 2] : 0.0);
            return 0;
        }
        FILE* f = std::fopen(outPath.c_str(), "wb");
        if (!f) { std::fprintf(stderr, "cannot write %s\n", outPath.c_str()); return 2; }
        std::fwrite(x.data(), sizeof(float), x.size(), f);
        std::fclose(f);
        std::printf("latency %d\n", eng.latencySamples());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
