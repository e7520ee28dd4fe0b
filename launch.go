package img2ext4

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
)

// LaunchConfig is what a VM or sandbox launcher needs from the image config to start the
// converted root filesystem.
type LaunchConfig struct {
	// Image is the manifest digest of the converted image.
	Image string `json:"image"`
	// Platform is os/arch[/variant] from the image config.
	Platform     string            `json:"platform"`
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	Env          []string          `json:"env,omitempty"`
	WorkingDir   string            `json:"working_dir,omitempty"`
	User         string            `json:"user,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	ExposedPorts []string          `json:"exposed_ports,omitempty"`
	StopSignal   string            `json:"stop_signal,omitempty"`
}

// LaunchConfig extracts the launch settings from the result.
func (r *Result) LaunchConfig() LaunchConfig {
	c := r.Config
	lc := LaunchConfig{
		Image: r.Digest.String(), Platform: r.Platform.String(),
		Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User,
		Labels: c.Labels, StopSignal: c.StopSignal,
	}
	for p := range c.ExposedPorts {
		lc.ExposedPorts = append(lc.ExposedPorts, p)
	}
	slices.Sort(lc.ExposedPorts)
	return lc
}

// WriteLaunchConfig writes the result's [LaunchConfig] as indented JSON to file, atomically.
func (r *Result) WriteLaunchConfig(file string) error {
	b, err := json.MarshalIndent(r.LaunchConfig(), "", "  ")
	if err != nil {
		return fmt.Errorf("write config %s: %w", file, err)
	}
	return createAtomic(file, "config", func(f *os.File) error {
		if _, err := f.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write config %s: %w", file, err)
		}
		return nil
	})
}
