// UNIT Rig editor: a "Load IR..." bar (the cabinet slot's impulse response) above JUCE's
// generic parameter editor, which still shows every parameter of the plugin.
#pragma once

#include <juce_audio_processors/juce_audio_processors.h>
#include <juce_gui_basics/juce_gui_basics.h>

#include "PluginProcessor.h"

class UnitRigEditor final : public juce::AudioProcessorEditor, private juce::Timer {
public:
    explicit UnitRigEditor(UnitRigProcessor&);
    ~UnitRigEditor() override = default;

    void paint(juce::Graphics&) override;
    void resized() override;

private:
    static constexpr int kBarHeight = 36;

    void timerCallback() override;  // follows the IR slot (state restores, loads)
    void chooseIr();
    void showIrStatus();

    UnitRigProcessor& processor;
    juce::TextButton loadIrButton{"Load IR..."};
    juce::TextButton clearIrButton{"Clear IR"};
    juce::Label irLabel;
    juce::GenericAudioProcessorEditor parameters;
    std::unique_ptr<juce::FileChooser> chooser;  // kept alive while the async dialog is open
    juce::String shownStatus;

    JUCE_DECLARE_NON_COPYABLE_WITH_LEAK_DETECTOR(UnitRigEditor)
};
