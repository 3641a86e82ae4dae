#include "PluginProcessor.h"

#include "PluginEditor.h"

#include "unit_model_data.h"

namespace {
juce::String paramId(const std::string& knobId) {
    return juce::String(knobId).replaceCharacters("/ ", "__");
}
float param(juce::AudioProcessorValueTreeState& s, const char* id) {
    return s.getRawParameterValue(id)->load();
}
}  // namespace

juce::AudioProcessorValueTreeState::ParameterLayout UnitRigProcessor::makeLayout(const unit::Engine& e) {
    using namespace juce;
    AudioProcessorValueTreeState::ParameterLayout layout;
    for (int i = 0; i < e.numKnobs(); ++i) {
        const unit::KnobInfo& k = e.knob(i);
        const String name = String(k.block) + ": " + String(k.name) + (k.modelled ? "" : " (fixed)");
        if (k.isSwitch) {
            StringArray choices;
            int def = 0;
            for (size_t j = 0; j < k.positions.size(); ++j) {
                choices.add(String(k.positions[j]));
                if (k.positions[j] == k.reference) def = (int)j;
            }
            layout.add(std::make_unique<AudioParameterChoice>(ParameterID{paramId(k.id), 1}, name, choices, def));
        } else {
            layout.add(std::make_unique<AudioParameterFloat>(
                ParameterID{paramId(k.id), 1}, name,
                NormalisableRange<float>((float)k.minimum, (float)k.maximum), (float)k.reference));
        }
    }
    // hand-added blocks
    layout.add(std::make_unique<AudioParameterFloat>(ParameterID{"gate_threshold_db", 1}, "Gate threshold (dB)",
                                                     NormalisableRange<float>(-100.0f, 0.0f), -80.0f));
    layout.add(std::make_unique<AudioParameterFloat>(ParameterID{"eq_low_db", 1}, "EQ low (dB)",
                                                     NormalisableRange<float>(-12.0f, 12.0f), 0.0f));
    layout.add(std::make_unique<AudioParameterFloat>(ParameterID{"eq_mid_db", 1}, "EQ mid (dB)",
                                                     NormalisableRange<float>(-12.0f, 12.0f), 0.0f));
    layout.add(std::make_unique<AudioParameterFloat>(ParameterID{"eq_high_db", 1}, "EQ high (dB)",
                                                     NormalisableRange<float>(-12.0f, 12.0f), 0.0f));
    layout.add(std::make_unique<AudioParameterBool>(ParameterID{"cab_on", 1}, "Cabinet IR on", true));
    layout.add(std::make_unique<AudioParameterFloat>(ParameterID{"delay_ms", 1}, "Delay time (ms)",
                                                     NormalisableRange<float>(1.0f, 2000.0f), 350.0f));
    layout.add(std::make_unique<AudioParameterFloat>(ParameterID{"delay_feedback", 1}, "Delay feedback",
                                                     NormalisableRange<float>(0.0f, 0.95f), 0.3f));
    layout.add(std::make_unique<AudioParameterFloat>(ParameterID{"delay_mix", 1}, "Delay mix",
                                                     NormalisableRange<float>(0.0f, 1.0f), 0.0f));
    layout.add(std::make_unique<AudioParameterFloat>(ParameterID{"reverb_size", 1}, "Reverb size",
                                                     NormalisableRange<float>(0.0f, 1.0f), 0.5f));
    layout.add(std::make_unique<AudioParameterFloat>(ParameterID{"reverb_mix", 1}, "Reverb mix",
                                                     NormalisableRange<float>(0.0f, 1.0f), 0.0f));
    layout.add(std::make_unique<AudioParameterFloat>(ParameterID{"pitch_semitones", 1}, "Pitch shift (st, slot)",
                                                     NormalisableRange<float>(-12.0f, 12.0f, 1.0f), 0.0f));
    return layout;
}

UnitRigProcessor::UnitRigProcessor()
    : AudioProcessor(BusesProperties()
                         .withInput("Input", juce::AudioChannelSet::mono(), true)
                         .withOutput("Output", juce::AudioChannelSet::stereo(), true)),
      engine(unit::Engine::fromJson(unit_model::json())),
      apvts(*this, nullptr, "UNIT", makeLayout(engine)) {
    for (int i = 0; i < engine.numKnobs(); ++i) {
        const unit::KnobInfo& k = engine.knob(i);
        knobParams.push_back({i, apvts.getRawParameterValue(paramId(k.id)), k.isSwitch ? k.positions : std::vector<double>{}});
    }
}

bool UnitRigProcessor::isBusesLayoutSupported(const BusesLayout& layouts) const {
    const auto in = layouts.getMainInputChannelSet(), out = layouts.getMainOutputChannelSet();
    return (in == juce::AudioChannelSet::mono() || in == juce::AudioChannelSet::stereo()) &&
           (out == juce::AudioChannelSet::mono() || out == juce::AudioChannelSet::stereo());
}

void UnitRigProcessor::prepareToPlay(double sr, int samplesPerBlock) {
    sampleRate = sr;
    for (auto& kp : knobParams) {  // settings before prepare apply without gliding
        const float v = kp.value->load();
        engine.setKnob(kp.engineIndex, kp.positions.empty() ? (double)v : kp.positions[(size_t)juce::jlimit(0, (int)kp.positions.size() - 1, (int)v)]);
    }
    engine.prepare(sr, samplesPerBlock);
    setLatencySamples(engine.latencySamples());
    const juce::dsp::ProcessSpec mono{sr, (juce::uint32)samplesPerBlock, 1};
    gate.prepare(mono);
    gate.setRatio(10.0f);
    gate.setAttack(1.0f);
    gate.setRelease(50.0f);
    for (auto* f : {&eqLow, &eqMid, &eqHigh}) {
        f->coefficients = new juce::dsp::IIR::Coefficients<float>(1, 0, 0, 1, 0, 0);  // allocated here, not in process
        f->prepare(mono);
    }
    takePendingImpulseResponse();  // before prepare(): the IR is then ready for the first block
    cabinet.prepare(mono);
    delay.prepare(mono);
    reverb.prepare(mono);
    updateHandBlocks();
}

void UnitRigProcessor::reset() {
    engine.reset();
    gate.reset();
    for (auto* f : {&eqLow, &eqMid, &eqHigh}) f->reset();
    cabinet.reset();
    delay.reset();
    reverb.reset();
}

void UnitRigProcessor::updateHandBlocks() {
    using AC = juce::dsp::IIR::ArrayCoefficients<float>;
    const float sr = (float)sampleRate;
    *eqLow.coefficients = AC::makeLowShelf(sr, 120.0f, 0.707f, juce::Decibels::decibelsToGain(param(apvts, "eq_low_db")));
    *eqMid.coefficients = AC::makePeakFilter(sr, 800.0f, 0.9f, juce::Decibels::decibelsToGain(param(apvts, "eq_mid_db")));
    *eqHigh.coefficients = AC::makeHighShelf(sr, 3500.0f, 0.707f, juce::Decibels::decibelsToGain(param(apvts, "eq_high_db")));
    gate.setThreshold(param(apvts, "gate_threshold_db"));
    juce::dsp::Reverb::Parameters rp;
    // juce::Reverb scales wetLevel by 3 and dryLevel by 2 internally: undo that, so mix 0
    // is the dry signal at unity gain (exactly) and mix 1 the wet signal with the dry at -6 dB
    const float mix = param(apvts, "reverb_mix");
    rp.roomSize = param(apvts, "reverb_size");
    rp.wetLevel = mix / 3.0f;
    rp.dryLevel = 0.5f * (1.0f - 0.5f * mix);
    reverb.setParameters(rp);
}

void UnitRigProcessor::processBlock(juce::AudioBuffer<float>& buffer, juce::MidiBuffer&) {
    juce::ScopedNoDenormals noDenormals;
    const int n = buffer.getNumSamples();
    if (getTotalNumInputChannels() > 1)  // stereo in: mono sum
        buffer.addFrom(0, 0, buffer, 1, 0, n), buffer.applyGain(0, 0, n, 0.5f);
    float* x = buffer.getWritePointer(0);

    for (auto& kp : knobParams) {
        const float v = kp.value->load();
        engine.setKnob(kp.engineIndex, kp.positions.empty() ? (double)v : kp.positions[(size_t)juce::jlimit(0, (int)kp.positions.size() - 1, (int)v)]);
    }
    updateHandBlocks();

    juce::dsp::AudioBlock<float> block(&x, 1, (size_t)n);
    juce::dsp::ProcessContextReplacing<float> ctx(block);
    if (param(apvts, "gate_threshold_db") > -100.0f) gate.process(ctx);  // at -100 dB (its minimum) the gate is off
    engine.process(x, n);  // the trained blocks in series
    eqLow.process(ctx);
    eqMid.process(ctx);
    eqHigh.process(ctx);
    takePendingImpulseResponse();
    if (param(apvts, "cab_on") > 0.5f && irActive.load() && cabinet.getCurrentIRSize() > 0) cabinet.process(ctx);
    const float mix = param(apvts, "delay_mix"), fb = param(apvts, "delay_feedback");
    delay.setDelay((float)(param(apvts, "delay_ms") * 0.001 * sampleRate));
    for (int i = 0; i < n; ++i) {
        const float d = delay.popSample(0);
        delay.pushSample(0, x[i] + fb * d);
        x[i] += mix * d;
    }
    reverb.process(ctx);
    // pitch shift slot (pitch_semitones): pass-through until you add a shifter here.

    for (int ch = 1; ch < getTotalNumOutputChannels(); ++ch) buffer.copyFrom(ch, 0, buffer, 0, 0, n);
}

bool UnitRigProcessor::loadImpulseResponse(const juce::File& file) {
    constexpr double kMaxSeconds = 10.0;
    auto fail = [&](const juce::String& why) {  // the slot keeps what it had
        const juce::ScopedLock sl(irInfoLock);
        irStatus = "IR not loaded: " + why +
                   (irPath.isNotEmpty() ? "; still using " + juce::File(irPath).getFileName() : "");
        return false;
    };
    if (!file.existsAsFile()) return fail(file.getFullPathName() + " does not exist; choose the file again");
    juce::AudioFormatManager formats;
    formats.registerBasicFormats();
    std::unique_ptr<juce::AudioFormatReader> reader(formats.createReaderFor(file));
    if (reader == nullptr || reader->lengthInSamples <= 0 || reader->sampleRate <= 0)
        return fail(file.getFileName() + " is not a readable WAV/AIFF file");
    const int channels = std::max(1, (int)reader->numChannels);
    const int length = (int)std::min(reader->lengthInSamples, (juce::int64)(kMaxSeconds * reader->sampleRate));
    juce::AudioBuffer<float> all(channels, length);
    if (!reader->read(&all, 0, length, 0, true, true)) return fail("cannot read " + file.getFileName());
    juce::AudioBuffer<float> mono(1, length);  // the chain is mono: average the channels
    mono.copyFrom(0, 0, all, 0, 0, length);
    for (int ch = 1; ch < channels; ++ch) mono.addFrom(0, 0, all, ch, 0, length);
    if (channels > 1) mono.applyGain(1.0f / (float)channels);
    {
        const juce::SpinLock::ScopedLockType sl(pendingIrLock);
        std::swap(pendingIr, mono);  // the old pending buffer (if any) is freed here, not on the audio thread
        pendingIrRate = reader->sampleRate;
        pendingIrReady = true;
    }
    const juce::ScopedLock sl(irInfoLock);
    irPath = file.getFullPathName();
    irStatus = "IR: " + file.getFileName() + " (" + juce::String((double)length / reader->sampleRate, 2) + " s" +
               (reader->lengthInSamples > length ? ", cut to 10 s" : "") + ")";
    return true;
}

void UnitRigProcessor::clearImpulseResponse() {
    irActive.store(false);
    {
        const juce::SpinLock::ScopedLockType sl(pendingIrLock);
        pendingIrReady = false;
    }
    const juce::ScopedLock sl(irInfoLock);
    irPath = {};
    irStatus = "No IR loaded (the cabinet slot passes the signal through)";
}

juce::String UnitRigProcessor::impulseResponsePath() const {
    const juce::ScopedLock sl(irInfoLock);
    return irPath;
}

juce::String UnitRigProcessor::impulseResponseStatus() const {
    const juce::ScopedLock sl(irInfoLock);
    return irStatus;
}

void UnitRigProcessor::takePendingImpulseResponse() {
    const juce::SpinLock::ScopedTryLockType sl(pendingIrLock);  // never waits on the audio thread
    if (!sl.isLocked() || !pendingIrReady) return;
    // wait-free: the buffer is moved into the convolution's queue, loaded on its thread
    cabinet.loadImpulseResponse(std::move(pendingIr), pendingIrRate, juce::dsp::Convolution::Stereo::no,
                                juce::dsp::Convolution::Trim::yes, juce::dsp::Convolution::Normalise::yes);
    pendingIrReady = false;
    irActive.store(true);
}

juce::AudioProcessorEditor* UnitRigProcessor::createEditor() { return new UnitRigEditor(*this); }

void UnitRigProcessor::getStateInformation(juce::MemoryBlock& destData) {
    auto state = apvts.copyState();
    state.setProperty("ir_path", impulseResponsePath(), nullptr);  // the IR by path (the file is not embedded)
    if (auto xml = state.createXml()) copyXmlToBinary(*xml, destData);
}

void UnitRigProcessor::setStateInformation(const void* data, int sizeInBytes) {
    auto xml = getXmlFromBinary(data, sizeInBytes);
    if (xml == nullptr || !xml->hasTagName(apvts.state.getType())) return;
    apvts.replaceState(juce::ValueTree::fromXml(*xml));
    const juce::String path = xml->getStringAttribute("ir_path");
    if (path.isEmpty() || !juce::File::isAbsolutePath(path)) {
        clearImpulseResponse();
    } else if (!loadImpulseResponse(juce::File(path))) {
        clearImpulseResponse();  // the session's IR is gone: an empty slot, but the path is kept
        const juce::ScopedLock sl(irInfoLock);  // (saved again as it was) and the editor says so
        irPath = path;
        irStatus = "IR not found: " + path + " (load it again)";
    }
}

juce::AudioProcessor* JUCE_CALLTYPE createPluginFilter() { return new UnitRigProcessor(); }
