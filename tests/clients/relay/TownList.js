// Municipalities, one state or all, as a second paginated connection.
import { graphql } from 'relay-runtime';

export const townListFragment = graphql`
  fragment TownList_query on Query
  @argumentDefinitions(
    state: { type: "String" }
    count: { type: "Int", defaultValue: 100 }
    cursor: { type: "String" }
  )
  @refetchable(queryName: "TownListPaginationQuery") {
    municipalities(state: $state, first: $count, after: $cursor)
    @connection(key: "TownList_municipalities", filters: ["state"]) {
      edges {
        node {
          id
          subdomain
          name
          state
        }
      }
    }
  }
`;
