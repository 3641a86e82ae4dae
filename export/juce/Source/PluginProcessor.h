// UNIT Rig plugin: the exported twin (unit::Engine, all trained blocks in series) with
// slots for the blocks added by hand. Mono in, the result on every output channel.
//
// Chain: noise gate -> trained blocks (the rig's knobs) -> EQ (low shelf, mid peak,
// high shelf) -> cabinet IR (juce::dsp::Convolution; loadImpulseResponse) -> delay ->
// reverb -> pitch shift (an empty slot: JUCE has no pitch shifter; put yours there).
// At their neutral settings (gate threshold at its minimum, -100 dB = off; EQ 0 dB; no
// IR; delay and reverb mix 0) the hand-added blocks pass the signal through unchanged,
// so the plugin's output is the trained blocks' alone (UNIT Trainer's capture test
// checks this sample for sample against the twin).
//
// Parameters: one per knob of the rig (modelled and fixed ones; ids from model.json,
// '/' -> '_'), then the hand-added blocks' parameters. The editor (PluginEditor.h) is
// JUCE's generic one under a "Load IR..." bar; the IR's path is saved in the plugin
// state ("ir_path") and loaded again when the state is restored.
#pragma once

#include <juce_audio_processors/juce_audio_processors.h>
#include <juce_dsp/juce_dsp.h>

#include "unit_engine.h"

class UnitRigProcessor final : public juce::AudioProcessor {
public:
    UnitRigProcessor();
    ~UnitRigProcessor() override = default;

    void prepareToPlay(double sampleRate, int samplesPerBlock) override;
    void releaseResources() override {}
    void reset() override;  // clears every state (a host's stop / offline render); knobs jump to their values
    bool isBusesLayoutSupported(const BusesLayout& layouts) const override;
    void processBlock(juce::AudioBuffer<float>&, juce::MidiBuffer&) override;
    using AudioProcessor::processBlock;

    juce::AudioProcessorEditor* createEditor() override;
    bool hasEditor() const override { return true; }

    const juce::String getName() const override { return JucePlugin_Name; }
    bool acceptsMidi() const override { return false; }
    bool producesMidi() const override { return false; }
    bool isMidiEffect() const override { return false; }
    double getTailLengthSeconds() const override { return 2.0; }

    int getNumPrograms() override { return 1; }
    int getCurrentProgram() override { return 0; }
    void setCurrentProgram(int) override {}
    const juce::String getProgramName(int) override { return {}; }
    void changeProgramName(int, const juce::String&) override {}

    void getStateInformation(juce::MemoryBlock& destData) override;
    void setStateInformation(const void* data, int sizeInBytes) override;

    /// Load a cabinet impulse response (WAV/AIFF; channels averaged to mono, at most
    /// 10 s) into the IR slot. Reads the file on the calling thread (not the audio
    /// thread); the audio thread picks it up at its next block. Returns false (and says
    /// why in impulseResponseStatus()) when the file cannot be read.
    bool loadImpulseResponse(const juce::File& file);
    /// Empty the IR slot: the cabinet block passes the signal through.
    void clearImpulseResponse();
    juce::String impulseResponsePath() const;    ///< "" when the slot is empty
    juce::String impulseResponseStatus() const;  ///< one line for the editor

    juce::AudioProcessorValueTreeState& state() { return apvts; }

private:
    static juce::AudioProcessorValueTreeState::ParameterLayout makeLayout(const unit::Engine& engine);
    void updateHandBlocks();
    void takePendingImpulseResponse();  // audio thread / prepareToPlay: hand a new IR to the convolution

    unit::Engine engine;
    juce::AudioProcessorValueTreeState apvts;
    struct KnobParam {
        int engineIndex;
        std::atomic<float>* value;
        std::vector<double> positions;  // switch: choice index -> position
    };
    std::vector<KnobParam> knobParams;

    juce::dsp::NoiseGate<float> gate;
    juce::dsp::IIR::Filter<float> eqLow, eqMid, eqHigh;
    juce::dsp::Convolution cabinet;
    // IR slot: the message thread reads the file into `pendingIr`; the audio thread moves
    // it into `cabinet` (Convolution's loads must not interleave with process()).
    mutable juce::CriticalSection irInfoLock;  // irPath, irStatus (never taken on the audio thread)
    juce::String irPath, irStatus{"No IR loaded (the cabinet slot passes the signal through)"};
    juce::SpinLock pendingIrLock;
    juce::AudioBuffer<float> pendingIr;
    double pendingIrRate = 0.0;
    bool pendingIrReady = false;
    std::atomic<bool> irActive{false};
    juce::dsp::DelayLine<float, juce::dsp::DelayLineInterpolationTypes::Linear> delay{192000};
    juce::dsp::Reverb reverb;
    double sampleRate = 48000.0;

    JUCE_DECLARE_NON_COPYABLE_WITH_LEAK_DETECTOR(UnitRigProcessor)
};
