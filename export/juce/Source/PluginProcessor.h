// UNIT Rig plugin: the exported twin (unit::Engine, all trained blocks in series) with
// slots for the blocks added by hand. Mono in, the result on every output channel.
//
// Chain: noise gate -> trained blocks (the rig's knobs) -> EQ (low shelf, mid peak,
// high shelf) -> cabinet IR (juce::dsp::Convolution; loadImpulseResponse) -> delay ->
// reverb -> pitch shift (an empty slot: JUCE has no pitch shifter; put yours there).
//
// Parameters: one per knob of the rig (modelled and fixed ones; ids from model.json,
// '/' -> '_'), then the hand-added blocks' parameters. A generic editor shows them all.
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

    /// Load a cabinet impulse response (wav/aiff); safe to call from the message thread.
    void loadImpulseResponse(const juce::File& file);

    juce::AudioProcessorValueTreeState& state() { return apvts; }

private:
    static juce::AudioProcessorValueTreeState::ParameterLayout makeLayout(const unit::Engine& engine);
    void updateHandBlocks();

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
    juce::dsp::DelayLine<float, juce::dsp::DelayLineInterpolationTypes::Linear> delay{192000};
    juce::dsp::Reverb reverb;
    double sampleRate = 48000.0;

    JUCE_DECLARE_NON_COPYABLE_WITH_LEAK_DETECTOR(UnitRigProcessor)
};
