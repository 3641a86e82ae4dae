// golden_test: checks unit::Engine against the twin's golden vectors.
//
//   g++ -O2 -std=c++17 -I. golden_test.cpp -o golden_test
//   ./golden_test ../model.json ../golden/golden.json
// Built with -DUNIT_EMBEDDED_MODEL it can also check the model embedded in
// unit_model_data.h (what a plugin ships):
//   ./golden_test --embedded ../golden/golden.json
//
// For each set (one per sample rate) and case: every knob at its reference, then the
// case's knobs, smoothing off, prepare at the set's sample rate, run the input (plus latency zeros), and compare
// engine[latency : latency + T - tail] with the twin's output[: T - tail]
// (ESR = sum(err^2) / sum(ref^2) must be <= max_esr, 1e-8 = error 80 dB down).
// Exit status 0 when every case passes.
#include "unit_engine.h"

#include <cstdio>
#ifdef UNIT_EMBEDDED_MODEL
#include "unit_model_data.h"
#endif

static unit::Engine loadEngine(const std::string& model) {
#ifdef UNIT_EMBEDDED_MODEL
    if (model == "--embedded") return unit::Engine::fromJson(unit_model::json());
#endif
    return unit::Engine::fromFile(model);
}

int main(int argc, char** argv) {
    if (argc < 3) { std::fprintf(stderr, "usage: golden_test MODEL.json GOLDEN.json\n"); return 2; }
    try {
        std::ifstream f(argv[2], std::ios::binary);
        if (!f) { std::fprintf(stderr, "cannot open %s\n", argv[2]); return 2; }
        std::stringstream ss;
        ss << f.rdbuf();
        unit::json::Value g = unit::json::parse(ss.str());
        if (g["format"].str() != "unit-golden") throw std::runtime_error("not a unit-golden file");
        const double maxEsr = g["max_esr"].num();
        int failures = 0;
        for (size_t si = 0; si < g["sets"].size(); ++si) {
        const unit::json::Value& set = g["sets"][si];
        const double sr = set["sample_rate"].num();
        const int tail = (int)set["tail_samples"].num();
        const std::vector<double> input = set["input"].nums();
        for (size_t c = 0; c < set["cases"].size(); ++c) {
            const unit::json::Value& cs = set["cases"][c];
            unit::Engine eng = loadEngine(argv[1]);
            eng.setSmoothing(false);
            for (int k = 0; k < eng.numKnobs(); ++k) eng.setKnob(k, eng.knob(k).reference);
            for (size_t k = 0; k < cs["knobs"].keys.size(); ++k)
                if (!eng.setKnob(cs["knobs"].keys[k], cs["knobs"].items[k].num()))
                    throw std::runtime_error("unknown knob " + cs["knobs"].keys[k]);
            eng.prepare(sr, 512);
            const int lat = eng.latencySamples();
            std::vector<float> x(input.begin(), input.end());
            x.resize(x.size() + (size_t)lat, 0.0f);
            for (size_t i = 0; i < x.size(); i += 512)
                eng.process(x.data() + i, (int)std::min<size_t>(512, x.size() - i));
            const std::vector<double> ref = cs["output"].nums();
            double num = 0, den = 0;
            for (size_t i = 0; i + (size_t)tail < ref.size(); ++i) {
                double e = (double)x[i + (size_t)lat] - ref[i];
                num += e * e;
                den += ref[i] * ref[i];
            }
            double esr = num / (den > 0 ? den : 1e-30);
            bool ok = esr <= maxEsr;
            failures += !ok;
            std::printf("%g Hz case %zu: ESR %.3e (%.1f dB) %s\n", sr, c, esr, 10 * std::log10(esr + 1e-300),
                        ok ? "ok" : "FAIL");
        }
        }
        std::printf(failures ? "%d case(s) failed\n" : "all cases pass\n", failures);
        return failures ? 1 : 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
