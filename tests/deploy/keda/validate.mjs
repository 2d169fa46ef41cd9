// Validates KEDA resources (a JSON array on stdin) with KEDA's own schemas, offline.
// Prints a JSON array of the problems found: [] when every resource is valid.
import { readFileSync } from "node:fs";
import * as v1alpha1 from "@kubernetes-models/keda/keda.sh/v1alpha1";

const problems = [];
for (const resource of JSON.parse(readFileSync(0, "utf8"))) {
  const name = `${resource.kind}/${resource.metadata?.name}`;
  const Model = resource.apiVersion === "keda.sh/v1alpha1" ? v1alpha1[resource.kind] : undefined;
  if (!Model) {
    problems.push(`${name}: not a KEDA kind this package knows (${resource.apiVersion})`);
    continue;
  }
  try {
    new Model(resource).validate();
  } catch (error) {
    problems.push(`${name}: ${error.message}`);
  }
}
console.log(JSON.stringify(problems));
