"""Agents and what they may do: tiers, tool rules, immutable policy versions, kill switches,
releases and agent API tokens. Every change goes through ``rollout.actions``."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Effect(models.TextChoices):
    READ = "read"
    DRAFT = "draft"
    WRITE = "write"


class Risk(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


RISK_ORDER = [Risk.LOW, Risk.MEDIUM, Risk.HIGH, Risk.CRITICAL]


class TierOutcome(models.TextChoices):
    ALLOW = "allow"
    DENY = "deny"
    SHADOW = "shadow"
    PENDING = "pending"
    AUTO = "auto"  # allowed when risk <= the tier's auto-approve limit, else pending


class Tier(models.Model):
    """One rung of the rollout ladder: what each tool effect gets, the auto-approve limit,
    how long pending actions wait, and the exit criteria for promotion. Seeded by a data
    migration and editable as data."""

    name = models.SlugField(max_length=40, unique=True)
    rank = models.PositiveSmallIntegerField(unique=True)
    description = models.CharField(max_length=200, blank=True)
    read_outcome = models.CharField(max_length=10, choices=TierOutcome.choices)
    draft_outcome = models.CharField(max_length=10, choices=TierOutcome.choices)
    write_outcome = models.CharField(max_length=10, choices=TierOutcome.choices)
    auto_approve_max_risk = models.CharField(max_length=10, choices=Risk.choices, blank=True)
    # Seconds a pending action waits before it expires, per risk level.
    pending_ttl_seconds = models.JSONField(default=dict)
    # The longest a pending action may wait, counted from its submission, when reviewers
    # extend its expiry (``approvals.actions.extend_expiry``); 0: no extension.
    max_pending_seconds = models.PositiveIntegerField(default=0)
    # {"min_sample": 50, "max_rejection_rate": 0.05, "max_failure_rate": 0.02,
    #  "min_shadow_agreement": 0.9, "window_days": 14}
    exit_criteria = models.JSONField(default=dict)

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """An extension never shortens the wait: the maximum is 0 (none) or at least the
        longest pending timeout."""
        longest = max((int(v) for v in (self.pending_ttl_seconds or {}).values()), default=0)
        if self.max_pending_seconds and self.max_pending_seconds < longest:
            raise ValidationError(
                {"max_pending_seconds": f"0 (no extension) or at least {longest} seconds."}
            )

    def as_policy(self) -> dict:
        return {
            "name": self.name,
            "rank": self.rank,
            "outcomes": {
                "read": self.read_outcome,
                "draft": self.draft_outcome,
                "write": self.write_outcome,
            },
            "auto_approve_max_risk": self.auto_approve_max_risk,
            "pending_ttl_seconds": self.pending_ttl_seconds,
            "max_pending_seconds": self.max_pending_seconds,
        }


class Agent(models.Model):
    """A program that asks the gate before its tool calls."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="agents")
    active = models.BooleanField(default=True)
    rate_limit_per_minute = models.PositiveIntegerField(default=600)
    # Signs webhooks to the agent's callback URLs (HMAC needs the secret itself).
    webhook_secret = models.CharField(max_length=80, blank=True)
    # After a rotation the previous secret also signs, until this time (grace period).
    previous_webhook_secret = models.CharField(max_length=80, blank=True)
    previous_webhook_secret_until = models.DateTimeField(null=True, blank=True)
    # Thresholds over a sliding window; empty means no circuit breaker.
    circuit_breaker = models.JSONField(default=dict, blank=True)
    # The newest policy version; the gate evaluates against it.
    current_policy = models.ForeignKey(
        "PolicyVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        permissions = [
            ("review_agent", "Review this agent's actions"),
            ("critical_approve_agent", "Approve this agent's critical actions"),
            ("govern_agent", "Govern this agent's tier, rules and access"),
            ("kill_agent", "Engage and release this agent's kill switch"),
            ("audit_agent", "Read this agent's audit trail"),
        ]

    def __str__(self) -> str:
        return self.slug


class RuleKind(models.TextChoices):
    ALLOWED = "allowed"
    FORBIDDEN = "forbidden"
    REQUIRES_APPROVAL = "requires_approval"


class ToolRule(models.Model):
    """What one agent may do with one tool. Tools without a rule are denied."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tool_rules")
    tool = models.CharField(max_length=120)
    effect = models.CharField(max_length=10, choices=Effect.choices)
    rule = models.CharField(max_length=20, choices=RuleKind.choices)
    base_risk = models.CharField(max_length=10, choices=Risk.choices, default=Risk.LOW)
    # [{"field": "amount", "op": "<=", "value": 10000}, {"field": "environment", "op": "in",
    #   "value": ["staging"]}]
    argument_limits = models.JSONField(default=list, blank=True)
    # Blast-radius dimensions read from the arguments: {"amount": "amount",
    #   "records_affected": "batch.rows"} means amount ← arguments.amount, records_affected ←
    #   arguments.batch.rows. Risk weighs the higher of this and what the agent declares.
    blast_radius_from_arguments = models.JSONField(default=dict, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    # Confidence routing: a call this rule would let run without a person waits for one
    # when the agent's ``rationale.confidence`` (missing: 0) is below this (0..1; null: no
    # minimum). ``rollout.policy`` applies it.
    min_confidence = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(1)]
    )
    # Bounds of standing approvals ("approve, and allow the same for a while"): {} when
    # none are allowed, else {"allowed": true, "max_minutes", "max_uses", "max_risk",
    # "at_most": [fields]} (``rollout.standing``).
    standing = models.JSONField(default=dict, blank=True)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["agent", "tool"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "tool"], name="tool_rule_unique"),
            models.CheckConstraint(
                condition=Q(min_confidence__isnull=True)
                | Q(min_confidence__gte=0, min_confidence__lte=1),
                name="tool_rule_min_confidence_0_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug}:{self.tool}"

    def as_policy(self) -> dict:
        return {
            "effect": self.effect,
            "rule": self.rule,
            "base_risk": self.base_risk,
            "argument_limits": self.argument_limits,
            "blast_radius_from_arguments": self.blast_radius_from_arguments,
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "min_confidence": self.min_confidence,
            "standing": self.standing or {},
        }


class EnvironmentOverride(models.Model):
    """How one agent's policy differs in one environment (``settings.AIRLOCK_ENVIRONMENTS``):
    a tier that replaces the agent's tier there, and tool rules that replace the agent's
    rule for those tools there (a tool may be ruled only in one environment). A call is
    judged by the agent's policy with its environment's override laid over it
    (``rollout.policy.effective_snapshot``); governance changes it like any rule."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="environment_overrides")
    environment = models.CharField(max_length=40)
    # None: the agent's own tier applies in this environment.
    tier = models.ForeignKey(
        Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="environment_overrides"
    )
    # {tool: full rule, as ``ToolRule.as_policy``}: each replaces the agent's rule for that
    # tool in this environment.
    tools = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["agent", "environment"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment"], name="environment_override_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug}@{self.environment}"

    def as_policy(self) -> dict:
        """The override as the snapshot holds it: only the parts it sets."""
        policy: dict = {}
        if self.tier_id is not None:
            policy["tier"] = self.tier.as_policy()
        if self.tools:
            policy["tools"] = {tool: self.tools[tool] for tool in sorted(self.tools)}
        return policy


class PolicyVersion(models.Model):
    """An immutable snapshot of everything the gate needs to decide for one agent: tier
    definition, tool rules, rate limits, risk and approval settings. Never updated."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="policy_versions")
    number = models.PositiveIntegerField()
    snapshot = models.JSONField()
    reason = models.CharField(max_length=300, blank=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="policy_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug} v{self.number}"


class Release(models.Model):
    """A version of the agent's brain: model, prompt and tool schema."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="releases")
    model = models.CharField(max_length=120, blank=True)
    prompt_version = models.CharField(max_length=120, blank=True)
    tool_schema_version = models.CharField(max_length=120, blank=True)
    extra = models.JSONField(default=dict, blank=True)
    fingerprint = models.CharField(max_length=64)
    first_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "fingerprint"], name="release_unique")
        ]

    def __str__(self) -> str:
        return f"{self.model} / {self.prompt_version}"


class AgentToken(models.Model):
    """A bearer token of one agent. Only its SHA-256 is stored; the token is shown once."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=80, default="default")
    prefix = models.CharField(max_length=12)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The environment the token acts in (``rollout.environments``); "" = not bound: the
    # call's declared environment then only raises its risk.
    environment = models.CharField(max_length=40, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.agent.slug}:{self.prefix}…"


class KillSwitch(models.Model):
    """A stop: global, one agent, or one tool across agents. Engaged while ``released_at``
    is empty. A drill switch targets only the drill probe of one agent."""

    class Scope(models.TextChoices):
        GLOBAL = "global"
        AGENT = "agent"
        TOOL = "tool"

    scope = models.CharField(max_length=10, choices=Scope.choices)
    target = models.CharField(max_length=120, blank=True)
    # Only calls in this environment are stopped; "" = every environment.
    environment = models.CharField(max_length=40, blank=True)
    reason = models.TextField()
    engaged_by = models.CharField(max_length=150)
    engaged_at = models.DateTimeField(auto_now_add=True)
    released_by = models.CharField(max_length=150, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.TextField(blank=True)
    is_drill = models.BooleanField(default=False)
    # What a circuit breaker saw when it tripped this switch.
    trip = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-engaged_at"]
        indexes = [
            models.Index(
                fields=["scope", "target"],
                condition=Q(released_at__isnull=True),
                name="engaged_switches",
            )
        ]

    def __str__(self) -> str:
        where = f"{self.scope}:{self.target or '*'}"
        return f"{where} in {self.environment}" if self.environment else where

    @property
    def engaged(self) -> bool:
        return self.released_at is None
