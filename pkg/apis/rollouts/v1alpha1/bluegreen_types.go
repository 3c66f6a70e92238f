package v1alpha1

// BlueGreenStrategy runs the new version beside the active one, behind a
// preview Service, and switches the active Service on promotion.
//
// +kubebuilder:validation:XValidation:rule="!has(self.previewService) || self.previewService != self.activeService",message="activeService and previewService must be different Services"
// +kubebuilder:validation:XValidation:rule="!has(self.autoPromotionSeconds) || self.autoPromotionEnabled",message="autoPromotionSeconds has no effect when autoPromotionEnabled is false"
type BlueGreenStrategy struct {
	// ActiveService receives production traffic.
	// +kubebuilder:validation:MinLength=1
	ActiveService string `json:"activeService"`
	// PreviewService points at the new version before promotion.
	// +optional
	PreviewService string `json:"previewService,omitempty"`
	// AutoPromotionEnabled promotes as soon as the new version is available
	// (and pre-promotion analysis has passed). When false the rollout pauses
	// with BlueGreenPause until promoted.
	// +kubebuilder:default=true
	// +optional
	AutoPromotionEnabled *bool `json:"autoPromotionEnabled,omitempty"`
	// AutoPromotionSeconds waits this long after the new version is available
	// before promoting.
	// +kubebuilder:validation:Minimum=0
	// +optional
	AutoPromotionSeconds *int32 `json:"autoPromotionSeconds,omitempty"`
	// PreviewReplicaCount sizes the new version before promotion; it is
	// scaled to full size just before the switch.
	// +kubebuilder:validation:Minimum=0
	// +optional
	PreviewReplicaCount *int32 `json:"previewReplicaCount,omitempty"`
	// ScaleDownDelaySeconds keeps the previous version this long after the
	// switch.
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=0
	// +optional
	ScaleDownDelaySeconds *int32 `json:"scaleDownDelaySeconds,omitempty"`
	// AbortScaleDownDelaySeconds keeps the new version this long after an
	// abort; 0 keeps it until the next update.
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=0
	// +optional
	AbortScaleDownDelaySeconds *int32 `json:"abortScaleDownDelaySeconds,omitempty"`
	// PrePromotionAnalysis must succeed before the active Service switches.
	// +optional
	PrePromotionAnalysis *RolloutAnalysis `json:"prePromotionAnalysis,omitempty"`
	// PostPromotionAnalysis runs after the switch; failing switches back.
	// +optional
	PostPromotionAnalysis *RolloutAnalysis `json:"postPromotionAnalysis,omitempty"`
	// AntiAffinity keeps new pods off the nodes of the previous version.
	// +optional
	AntiAffinity *AntiAffinity `json:"antiAffinity,omitempty"`
	// ActiveMetadata is ephemeral metadata of the pods the active Service
	// selects: in their ReplicaSet's pod template and on the running pods.
	// At the switch the promoted pods get activeMetadata in place of
	// previewMetadata, by patch: no pod is restarted. The labels must not use
	// the keys of the Rollout's selector or
	// rollouts.kubeseed.io/pod-template-hash.
	// +kubebuilder:validation:XValidation:rule="!has(self.labels) || !('rollouts.kubeseed.io/pod-template-hash' in self.labels)",message="activeMetadata.labels must not set rollouts.kubeseed.io/pod-template-hash"
	// +optional
	ActiveMetadata *PodMetadata `json:"activeMetadata,omitempty"`
	// PreviewMetadata is ephemeral metadata of the new revision's pods until
	// the active Service switches to them (and after an abort, until they
	// are gone). The labels must not use the keys of the Rollout's selector
	// or rollouts.kubeseed.io/pod-template-hash.
	// +kubebuilder:validation:XValidation:rule="!has(self.labels) || !('rollouts.kubeseed.io/pod-template-hash' in self.labels)",message="previewMetadata.labels must not set rollouts.kubeseed.io/pod-template-hash"
	// +optional
	PreviewMetadata *PodMetadata `json:"previewMetadata,omitempty"`
}
