package layerstream

// WaitDecoded waits until layer i of p has been decoded and returns how many of its bytes
// went to its spool file and the most bytes p held in memory at once.
func WaitDecoded(p *Pipeline, i int) (spooled, peakMem int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := p.layers[i]
	for !pl.done && !p.dead {
		p.cond.Wait()
	}
	return pl.fsize, p.peakMem
}

// Mapped returns how many chunks p has mapped and not unmapped.
func Mapped(p *Pipeline) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mapped
}

// Started waits until n layers of p have been taken by its decoders (or p is dead) and
// returns the layers in the order their decoding started.
func Started(p *Pipeline, n int) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.order) < n && !p.dead {
		p.cond.Wait()
	}
	return append([]int(nil), p.order...)
}
