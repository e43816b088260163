package bench

import "testing"

func TestMeasureCookieSize(t *testing.T) {
	small, err := MeasureCookieSize(1, "edgepass_session")
	if err != nil {
		t.Fatal(err)
	}
	big, err := MeasureCookieSize(50, "edgepass_session")
	if err != nil {
		t.Fatal(err)
	}
	if big.TokenBytes <= small.TokenBytes || big.CookieBytes != big.TokenBytes+len("edgepass_session=") {
		t.Errorf("sizes: 1 group %+v, 50 groups %+v", small, big)
	}
	if big.Fits != (big.CookieBytes <= 4096) {
		t.Errorf("Fits = %v for %d bytes", big.Fits, big.CookieBytes)
	}
	if _, err := MeasureCookieSize(51, "edgepass_session"); err == nil {
		t.Error("MeasureCookieSize(51) accepted more groups than it has")
	}
}
