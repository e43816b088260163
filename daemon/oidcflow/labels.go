package oidcflow

// LoginFailureReasons, RevocationKinds and GroupLimits list every label value
// oidcflow reports, so the metrics can start each series at zero (a series
// that appears only at its first event hides it from rate() and alerts).
var (
	LoginFailureReasons = []string{ReasonDiscovery, ReasonState, ReasonIdPError, ReasonExchange, ReasonIDToken,
		ReasonNonce, ReasonUserinfo, ReasonForbidden, ReasonSession, ReasonLoop, ReasonRateLimited, ReasonGroups}
	RevocationKinds = []string{KindLogout, KindBackchannel, KindRefresh}
	GroupLimits     = []string{LimitCount, LimitBytes, LimitName}
)
