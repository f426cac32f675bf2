#include "auth/token_command.h"

#include <iostream>
#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "auth/jwk.h"
#include "auth/jwt.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm {
namespace auth {

namespace {

constexpr char kUsage[] =
    "Usage:  farm token COMMAND\n\n"
    "Mint and check the bearer tokens Farm's servers accept (an administrator's tool).\n\n"
    "Commands:\n"
    "  mint     Sign a token with a private key (jwt/signing.key from make-certs.sh)\n"
    "  verify   Check a token against public keys and show who it names\n"
    "  jwks     Print the public keys of PEM key files as a JWK Set\n\n"
    "Run 'farm token COMMAND --help' for more information on a command.\n";

// "30d", "12h", "90m", "3600s" (absl durations plus days).
absl::StatusOr<absl::Duration> ParseTtl(absl::string_view text) {
  absl::Duration d;
  int64_t days = 0;
  if (absl::EndsWith(text, "d") && absl::SimpleAtoi(text.substr(0, text.size() - 1), &days)) {
    d = absl::Hours(24 * days);
  } else if (!absl::ParseDuration(text, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid --ttl \"", text, "\": want a duration such as 30d, 12h or 90m"));
  }
  if (d <= absl::ZeroDuration()) return absl::InvalidArgumentError("--ttl must be positive");
  return d;
}

int Fail(std::ostream& err, const absl::Status& s, int code = 1) {
  err << "farm token: " << s.message() << std::endl;
  return code;
}

int Mint(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
         const std::function<absl::Time()>& now) {
  std::string key_file, kid, ttl = "12h";
  TokenClaims c;
  common::FlagSet fs("farm token mint --key FILE --sub NAME [OPTIONS]",
                     "Sign a bearer token and print it. Claims: sub, farm/tenant, "
                     "farm/cache_read, farm/cache_write, farm/roles, iss, aud, iat, exp.");
  fs.String("key", 0, &key_file, "PEM private key to sign with (RSA, P-256 or Ed25519)", "FILE");
  fs.String("kid", 0, &kid, "Key id to name (default: the key's RFC 7638 thumbprint)", "KID");
  fs.String("sub", 0, &c.subject, "Who the token is for (a person, CI job or service)", "NAME");
  fs.String("tenant", 0, &c.tenant, "The tenant its builds belong to", "TENANT");
  fs.Repeated("read", 0, &c.read_scopes, "Cache scope it may read (repeatable; 'pr/*', '*')",
              "SCOPE");
  fs.Repeated("write", 0, &c.write_scopes, "Cache scope it may write (repeatable)", "SCOPE");
  fs.Repeated("role", 0, &c.roles, "Role: submit, admin (repeatable)", "ROLE");
  fs.String("ttl", 0, &ttl, "Lifetime (default 12h; e.g. 90m, 30d)", "DURATION");
  fs.String("issuer", 0, &c.issuer, "\"iss\" claim", "NAME");
  fs.Repeated("audience", 0, &c.audience, "\"aud\" claim (repeatable)", "NAME");
  auto rest = fs.Parse(args);
  if (!rest.ok()) return Fail(err, rest.status(), 2);
  if (fs.help_requested()) {
    out << fs.Help();
    return 0;
  }
  if (!rest->empty()) return Fail(err, absl::InvalidArgumentError("unexpected arguments"), 2);
  if (key_file.empty()) return Fail(err, absl::InvalidArgumentError("--key is required"), 2);
  if (c.subject.empty()) return Fail(err, absl::InvalidArgumentError("--sub is required"), 2);
  auto lifetime = ParseTtl(ttl);
  if (!lifetime.ok()) return Fail(err, lifetime.status(), 2);
  c.lifetime = *lifetime;
  auto pem = common::ReadFile(key_file);
  if (!pem.ok()) return Fail(err, pem.status());
  auto key = SigningKey::FromPem(*pem, kid);
  if (!key.ok()) return Fail(err, common::Annotate(key.status(), key_file));
  auto token = MintToken(*key, c, now());
  if (!token.ok()) return Fail(err, token.status());
  out << *token << "\n";
  return 0;
}

int Verify(const std::vector<std::string>& args, std::istream& in, std::ostream& out,
           std::ostream& err, const std::function<absl::Time()>& now) {
  TokenVerifierOptions o;
  common::FlagSet fs("farm token verify --keys FILE [TOKEN | -]",
                     "Check a token (argument or stdin) as a server would, and show its claims.");
  fs.String("keys", 0, &o.key_file, "Public keys (PEM or JWK Set), as servers' --token-keys",
            "FILE");
  fs.String("issuer", 0, &o.issuer, "Require this \"iss\"", "NAME");
  fs.String("audience", 0, &o.audience, "Require this \"aud\"", "NAME");
  auto rest = fs.Parse(args);
  if (!rest.ok()) return Fail(err, rest.status(), 2);
  if (fs.help_requested()) {
    out << fs.Help();
    return 0;
  }
  if (o.key_file.empty()) return Fail(err, absl::InvalidArgumentError("--keys is required"), 2);
  if (rest->size() > 1) return Fail(err, absl::InvalidArgumentError("one token at a time"), 2);
  std::string token;
  if (rest->empty() || (*rest)[0] == "-") {
    token.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } else {
    token = (*rest)[0];
  }
  token = std::string(absl::StripAsciiWhitespace(token));
  o.clock = now;
  o.cache_entries = 0;
  auto verifier = TokenVerifier::Create(o);
  if (!verifier.ok()) return Fail(err, verifier.status());
  auto id = (*verifier)->Verify(token);
  if (!id.ok()) return Fail(err, id.status());
  auto list = [](const std::vector<std::string>& v) {
    return v.empty() ? std::string("-") : absl::StrJoin(v, " ");
  };
  out << "subject:  " << id->subject << "\n"
      << "tenant:   " << (id->tenant.empty() ? "-" : id->tenant) << "\n"
      << "read:     " << list(id->read_scopes) << "\n"
      << "write:    " << list(id->write_scopes) << "\n"
      << "roles:    " << list(id->roles) << "\n"
      << "expires:  "
      << (id->token_expiry == absl::InfiniteFuture()
              ? std::string("never")
              : absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", id->token_expiry, absl::UTCTimeZone()))
      << "\n"
      << "key:      " << id->token_key_id << "\n";
  return 0;
}

int Jwks(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  common::FlagSet fs("farm token jwks FILE...",
                     "Print the public keys of PEM files (private or public keys) as a JWK Set, "
                     "each named by its RFC 7638 thumbprint (the kid tokens carry).");
  auto files = fs.Parse(args);
  if (!files.ok()) return Fail(err, files.status(), 2);
  if (fs.help_requested()) {
    out << fs.Help();
    return 0;
  }
  if (files->empty()) return Fail(err, absl::InvalidArgumentError("name at least one file"), 2);
  std::vector<std::string> jwks;
  for (const std::string& f : *files) {
    auto text = common::ReadFile(f);
    if (!text.ok()) return Fail(err, text.status());
    if (absl::StrContains(*text, "PRIVATE KEY")) {
      auto key = SigningKey::FromPem(*text);
      if (!key.ok()) return Fail(err, common::Annotate(key.status(), f));
      jwks.push_back(key->public_key().ToJwk());
      continue;
    }
    auto keys = ParseKeyFile(*text, f);
    if (!keys.ok()) return Fail(err, keys.status());
    for (const PublicKey& k : *keys) jwks.push_back(k.ToJwk());
  }
  out << "{\"keys\":[\n  " << absl::StrJoin(jwks, ",\n  ") << "\n]}\n";
  return 0;
}

}  // namespace

int RunTokenCommand(const std::vector<std::string>& args, std::istream& in, std::ostream& out,
                    std::ostream& err, const std::function<absl::Time()>& now) {
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    (args.empty() ? err : out) << kUsage;
    return args.empty() ? 2 : 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "mint") return Mint(rest, out, err, now);
  if (args[0] == "verify") return Verify(rest, in, out, err, now);
  if (args[0] == "jwks") return Jwks(rest, out, err);
  err << "farm token: unknown command \"" << args[0] << "\"\n" << kUsage;
  return 2;
}

int RunTokenCommand(const std::vector<std::string>& args) {
  return RunTokenCommand(args, std::cin, std::cout, std::cerr, [] { return absl::Now(); });
}

}  // namespace auth
}  // namespace farm
