#include "PluginEditor.h"

UnitRigEditor::UnitRigEditor(UnitRigProcessor& p)
    : AudioProcessorEditor(p), processor(p), parameters(p) {
    loadIrButton.setTooltip("Load a cabinet impulse response (WAV or AIFF) into the IR slot");
    loadIrButton.onClick = [this] { chooseIr(); };
    clearIrButton.setTooltip("Empty the IR slot (the cabinet block passes the signal through)");
    clearIrButton.onClick = [this] { processor.clearImpulseResponse(); showIrStatus(); };
    irLabel.setJustificationType(juce::Justification::centredLeft);
    irLabel.setMinimumHorizontalScale(0.6f);
    addAndMakeVisible(loadIrButton);
    addAndMakeVisible(clearIrButton);
    addAndMakeVisible(irLabel);

    parameters.setResizable(false, false);  // this editor resizes; the generic one follows
    addAndMakeVisible(parameters);

    showIrStatus();
    startTimerHz(4);
    setResizable(true, false);
    setResizeLimits(360, kBarHeight + 125, 2000, kBarHeight + 1600);
    setSize(juce::jmax(480, parameters.getWidth()), kBarHeight + parameters.getHeight());
}

void UnitRigEditor::paint(juce::Graphics& g) {
    g.fillAll(getLookAndFeel().findColour(juce::ResizableWindow::backgroundColourId));
}

void UnitRigEditor::resized() {
    auto area = getLocalBounds();
    auto bar = area.removeFromTop(kBarHeight).reduced(6, 4);
    loadIrButton.setBounds(bar.removeFromLeft(96));
    bar.removeFromLeft(6);
    clearIrButton.setBounds(bar.removeFromLeft(80));
    bar.removeFromLeft(8);
    irLabel.setBounds(bar);
    parameters.setBounds(area);
}

void UnitRigEditor::chooseIr() {
    const juce::File current(processor.impulseResponsePath());
    const juce::File start = current.getParentDirectory().isDirectory()
                                 ? current.getParentDirectory()
                                 : juce::File::getSpecialLocation(juce::File::userHomeDirectory);
    chooser = std::make_unique<juce::FileChooser>("Load a cabinet impulse response", start, "*.wav;*.aif;*.aiff");
    const int chooserFlags = juce::FileBrowserComponent::openMode | juce::FileBrowserComponent::canSelectFiles;
    juce::Component::SafePointer<UnitRigEditor> safeThis(this);
    chooser->launchAsync(chooserFlags, [safeThis](const juce::FileChooser& fc) {
        if (safeThis == nullptr) return;  // the editor closed while the dialog was open
        const juce::File file = fc.getResult();
        if (file != juce::File{}) safeThis->processor.loadImpulseResponse(file);
        safeThis->showIrStatus();
    });
}

void UnitRigEditor::timerCallback() {
    if (processor.impulseResponseStatus() != shownStatus) showIrStatus();
}

void UnitRigEditor::showIrStatus() {
    shownStatus = processor.impulseResponseStatus();
    irLabel.setText(shownStatus, juce::dontSendNotification);
    irLabel.setTooltip(processor.impulseResponsePath());
    clearIrButton.setEnabled(processor.impulseResponsePath().isNotEmpty());
}
